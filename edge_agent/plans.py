"""Turn plans: one interface for every way the agent answers a turn.

A plan says what it needs (the student, library replies, facts), what each retrieved strategy costs
it in injected student tokens, and produces the turn's `ReplyStream`. `Agent.stream` only looks the
plan up by the prompting mode; no mode is special-cased there.
- `generate` (every rendering mode: plain, compact, system, ...): the student writes the reply with
  the retrieved guidance in its prompt, streamed token by token;
- `adapt`: reuse the nearest fitted exemplar, else the student writes with the fallback mode;
- `grounded`: the turn planner (`edge_agent.planner`): a checked choice of route, see `grounding`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from .backends import ChatResult, GenerationConfig, Message, Usage
from .library import Strategy
from .prompting import MARKER_STOPS
from .rendering import RENDERERS, PromptConfig, cap_tokens, check_mode, injected_text, render_prompt
from .reply import Reply, ReplyStream
from .retrieval import Retrieval, RetrievalConfig

if TYPE_CHECKING:  # pragma: no cover
    from .agent import Agent

__all__ = ["AdaptPlan", "GeneratePlan", "GroundedPlan", "TurnPlan", "plan_for"]


class TurnPlan(Protocol):
    name: str
    needs: frozenset[str]  # "student", "exemplars", "facts"

    def price(self, strategy: Strategy, params: Mapping[str, Any]) -> str:
        """The text this plan would inject for `strategy` (its token count is the budget price)."""

    def stream(self, agent: Agent, history: Sequence[Message], *, generation: GenerationConfig,
               retrieval: RetrievalConfig | None, prompting: PromptConfig) -> ReplyStream:
        """Answer the turn."""


def _with_marker_stops(cfg: GenerationConfig) -> GenerationConfig:
    # Small students sometimes echo the guidance markers; stop there instead of leaking them.
    return cfg.merged(stop=tuple(dict.fromkeys((*cfg.stop, *MARKER_STOPS))))


@dataclass(frozen=True)
class _StudentTurn:
    """A turn the student writes: its prompt, what was retrieved and when the turn started."""

    messages: list[dict[str, str]]
    found: Retrieval
    mode: str
    route: str
    start: float
    assemble_ms: float

    def stream(self, agent: Agent, cfg: GenerationConfig) -> ReplyStream:
        """The student's reply, streamed token by token; `.reply` (with the call's usage) at the end."""
        gen_start = time.perf_counter()
        call = agent.student.stream(self.messages, cfg)
        return ReplyStream(call, lambda text: self.reply(text, call.result or ChatResult(text), gen_start))

    def reply(self, text: str, result: ChatResult, gen_start: float) -> Reply:
        end = time.perf_counter()
        timings = {
            **self.found.timings,
            "assemble_ms": self.assemble_ms,
            "retrieval_ms": sum(self.found.timings.values()) + self.assemble_ms,
            "generate_ms": (end - gen_start) * 1e3,
            "total_ms": (end - self.start) * 1e3,
        }
        timings.update({k: float(result.timings[k]) for k in ("ttft_ms", "decode_tps") if k in result.timings})
        return Reply(text=text.strip(), hits=self.found.hits, timings=timings, usage=result.usage,
                     prompt=self.messages, mode=self.mode, finish_reason=result.finish_reason, route=self.route)


class GeneratePlan:
    """The student writes every reply; the mode decides how the strategies enter its prompt."""

    needs = frozenset({"student"})

    def __init__(self, mode: str) -> None:
        check_mode(mode)
        self.name = mode

    def price(self, strategy: Strategy, params: Mapping[str, Any]) -> str:
        return injected_text(strategy, self.name, params)

    def stream(self, agent: Agent, history: Sequence[Message], *, generation: GenerationConfig,
               retrieval: RetrievalConfig | None, prompting: PromptConfig) -> ReplyStream:
        start = time.perf_counter()
        messages, found, assemble_ms = agent.prepare(history, retrieval=retrieval, prompting=prompting)
        turn = _StudentTurn(messages, found, self.name, "", start, assemble_ms)
        return self.answer(agent, history, turn, generation, prompting)

    def answer(self, agent: Agent, history: Sequence[Message], turn: _StudentTurn, generation: GenerationConfig,
               prompting: PromptConfig) -> ReplyStream:
        """The reply to the prepared turn: here the student writes it, streamed."""
        return turn.stream(agent, _with_marker_stops(generation))


class AdaptPlan(GeneratePlan):
    """Reuse the nearest fitted exemplar (in one piece, within max_tokens), else generate."""

    needs = frozenset({"student", "exemplars"})

    def __init__(self) -> None:
        super().__init__("adapt")

    def answer(self, agent: Agent, history: Sequence[Message], turn: _StudentTurn, generation: GenerationConfig,
               prompting: PromptConfig) -> ReplyStream:
        from .adapt import choose_adapted

        start, found, assemble_ms = turn.start, turn.found, turn.assemble_ms
        cfg = _with_marker_stops(generation)
        embed = agent.retriever.embedder.embed if agent.retriever is not None else None
        calls: list[ChatResult] = []

        def write(msgs: Sequence[Message]) -> str:
            calls.append(agent.student.chat(msgs, cfg))
            return calls[-1].text

        gen_start = time.perf_counter()
        text, route = choose_adapted(
            agent.system_prompt, history, found.hits, prompting.params, agent.rules, write, embed
        )
        if route.startswith("fallback"):
            fallback = PromptConfig.from_mapping(
                {"mode": str(prompting.params.get("fallback", "plain")), "params": prompting.params}
            )
            messages = render_prompt(agent.system_prompt, history, found.hits, fallback)
            return replace(turn, messages=messages, route=route).stream(agent, cfg)
        count = agent.token_count
        shown, cut = cap_tokens(text, int(generation.max_tokens), count)
        end = time.perf_counter()
        # the student's usage when it was asked to rewrite the exemplar
        usage = calls[-1].usage if route == "revised" and calls else Usage()
        reply = Reply(
            text=shown,
            hits=found.hits,
            mode=self.name,
            route=route,
            finish_reason="length" if cut else "stop",
            prompt=[],
            usage=Usage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=count(shown),
                evaluated_prompt_tokens=usage.evaluated_prompt_tokens or 0,
            ),
            timings={
                **found.timings,
                "assemble_ms": assemble_ms,
                "generate_ms": (end - gen_start) * 1e3,
                "retrieval_ms": sum(found.timings.values()) + assemble_ms,
                "total_ms": (end - start) * 1e3,
                "ttft_ms": (end - start) * 1e3,
            },
        )
        return ReplyStream(iter([shown] if shown else []), lambda _joined: reply)


class GroundedPlan:
    """The turn planner: exemplar, gated student draft, clarify or hand-off (see edge_agent.planner)."""

    name = "grounded"
    needs = frozenset({"exemplars", "facts"})  # and the student, only when the pack lets it draft

    def price(self, strategy: Strategy, params: Mapping[str, Any]) -> str:
        # nothing is injected unless the student drafts; then it is the fallback mode's text
        return injected_text(strategy, str(params.get("fallback", "compact")), {})

    def stream(self, agent: Agent, history: Sequence[Message], *, generation: GenerationConfig,
               retrieval: RetrievalConfig | None, prompting: PromptConfig) -> ReplyStream:
        return agent.grounding().stream(history, generation)


def plan_for(mode: str) -> TurnPlan:
    """The plan that answers turns in `mode` (a ConfigError naming the valid modes if there is none)."""
    if mode == "grounded":
        return GroundedPlan()
    if mode == "adapt":
        return AdaptPlan()
    check_mode(mode)
    return GeneratePlan(mode) if mode in RENDERERS else GeneratePlan("plain")
