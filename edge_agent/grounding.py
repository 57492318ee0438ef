"""The grounded mode's I/O around the planner: search, facts, the student's draft and the gate.

Per turn: embed the recent window and the customer's latest request (two ONNX calls), search the
pack for candidates, derive the facts, let `Planner` choose a route, and only when it asks for a
draft call the student and gate the result. The reply is produced in one piece (it is checked
before anyone sees it), trimmed to `max_tokens`, and its usage is counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import GenerationConfig, Usage
from .conversation import query_text
from .errors import ConfigError
from .facts import Facts, FactTracker, load_fact_source, specs_from_manifest
from .gate import GateConfig, broken_rules, gate_reply, normalised
from .pack import embed_turn_texts
from .planner import Plan, Planner, PlannerParams
from .rendering import PromptConfig, cap_tokens, render_prompt
from .reply import Reply, ReplyStream
from .retrieval import Hit
from .rulecheck import RuleChecker

if TYPE_CHECKING:  # pragma: no cover
    from .agent import Agent

__all__ = ["Grounding"]

log = logging.getLogger(__name__)


class Grounding:
    """Planner, fact tracker and rule checker for one agent, built once from its pack."""

    def __init__(
        self,
        agent: Agent,
        planner: Planner,
        tracker: FactTracker,
        checker: RuleChecker,
        domain_vectors: np.ndarray,
        params: PlannerParams,
    ) -> None:
        self.agent = agent
        self.planner = planner
        self.tracker = tracker
        self.checker = checker
        self.domain_vectors = domain_vectors
        self.params = params

    @classmethod
    def for_agent(cls, agent: Agent) -> Grounding:
        retriever = agent.retriever
        if retriever is None:
            raise ConfigError(
                "the grounded mode needs a pack (its library and embedder); load one with Agent.from_pack"
            )
        params_src = agent.prompting.params if agent.prompting.mode == "grounded" else {}
        params = PlannerParams.from_params(dict(params_src))
        embedder = retriever.embedder
        pack = agent.pack
        turn = pack.turn_vectors if pack is not None else None
        if turn is None or len(turn) != len(retriever.strategies):
            log.info("pack has no turn vectors (built by an older version); embedding them now")
            turn = embed_turn_texts(retriever.strategies, embedder)
        domain = dict(pack.manifest.domain) if pack is not None else {}
        specs = specs_from_manifest(domain)
        source_cfg = dict(domain.get("fact_source", {}) or {})
        source = load_fact_source(source_cfg, base=Path(pack.path) if pack is not None else None)
        checker = agent.rule_checker()
        tracker = FactTracker(specs, source, embed=embedder.embed)
        tracker.add_establishers(retriever.strategies)
        planner = Planner(
            retriever.strategies,
            turn,
            system_prompt=agent.system_prompt,
            rules=agent.rules,
            rule_check=checker.violations if checker.semantic else None,
            specs=specs,
            replies=domain.get("replies"),
            params=params,
        )
        replies = turn[:, 1]
        domain_vectors = replies[np.linalg.norm(replies, axis=1) > 0]
        return cls(agent, planner, tracker, checker, domain_vectors, params)

    # --- one turn -------------------------------------------------------------------------------
    def _retriever(self) -> Any:
        if self.agent.retriever is None:
            raise ConfigError(
                "the grounded mode needs a pack (its library and embedder); load one with Agent.from_pack"
            )
        return self.agent.retriever

    def _search(self, vec: np.ndarray, k: int, threshold: float) -> list[Hit]:
        retriever = self._retriever()
        scores, rows = retriever.index.search(vec[None, :], k)
        return [
            Hit(retriever.strategies[int(r)], float(sc), int(r))
            for sc, r in zip(scores[0], rows[0], strict=True)
            if int(r) >= 0 and float(sc) >= threshold
        ]

    def candidates(
        self, history: Sequence[Mapping[str, str]]
    ) -> tuple[list[Hit], np.ndarray, np.ndarray, dict[str, float]]:
        """Hits for the recent window and the latest request (best score per entry), the window's
        vector, the request vectors, and timings."""
        retriever = self._retriever()
        cfg = self.agent.retrieval
        t0 = time.perf_counter()
        window_vec = retriever.embedder.embed([query_text(history, cfg.query_turns)])[0]
        # through the tracker's cache: deriving the facts embeds the same customer line
        request_vec = np.stack([self.tracker.vector(t) for t in self.planner.request_texts(history)])
        t1 = time.perf_counter()
        k = max(self.params.candidates, cfg.top_k)
        best: dict[str, Hit] = {}
        found = self._search(window_vec, k, cfg.threshold)
        for vec in request_vec:
            found += self._search(vec, k, cfg.threshold)
        for hit in found:
            if hit.strategy.id not in best or hit.score > best[hit.strategy.id].score:
                best[hit.strategy.id] = hit
        hits = sorted(best.values(), key=lambda h: -h.score)
        t2 = time.perf_counter()
        return hits, window_vec, request_vec, {"embed_ms": (t1 - t0) * 1e3, "search_ms": (t2 - t1) * 1e3}

    def stream(self, history: Sequence[Mapping[str, str]], cfg: GenerationConfig) -> ReplyStream:
        """One grounded turn (its route chosen with the params the agent's grounded mode was built with)."""
        agent = self.agent
        start = time.perf_counter()
        hits, window_vec, request_vec, timings = self.candidates(history)
        t0 = time.perf_counter()
        facts = self.tracker.derive(history)
        best_relevance = self.planner.best_relevance(request_vec)
        new_facts = False
        if best_relevance < self.params.off_topic:  # only then does it matter whether this line added a fact
            before = self.tracker.derive(history[:-1]) if len(history) > 1 else None
            new_facts = bool(facts.values) if before is None else before.values != facts.values
        t1 = time.perf_counter()
        plan = self.planner.plan(
            history, hits, request_vec, facts, new_facts=new_facts, best_relevance=best_relevance
        )
        if "fact_source" in facts.why:  # the lookup failed: say so, the turn went on without it
            plan = replace(plan, reason=f"{plan.reason}; fact source {facts.why['fact_source']}")
        t2 = time.perf_counter()
        messages: list[dict[str, str]] = []
        stats: dict[str, Any] = {}
        if plan.route == "generate":
            plan, messages, stats = self._draft(history, plan, facts, cfg, window_vec, request_vec)
        text, cut = self._final(plan, history, facts, cfg)
        if cut:
            stats["finish_reason"] = "length"
        end = time.perf_counter()
        completion = int(stats.get("completion_tokens") or (agent.token_count(text) if text else 0))
        usage = Usage(
            prompt_tokens=int(stats.get("prompt_tokens", 0)),
            completion_tokens=completion,
            evaluated_prompt_tokens=stats.get("evaluated_prompt_tokens", 0 if not messages else None),
        )
        all_timings = {
            **timings,
            "facts_ms": (t1 - t0) * 1e3,
            "plan_ms": (t2 - t1) * 1e3,
            "retrieval_ms": timings["embed_ms"] + timings["search_ms"],
            "generate_ms": float(stats.get("generate_ms", 0.0)),
            "total_ms": (end - start) * 1e3,
            "ttft_ms": (end - start) * 1e3,
        }
        reply = Reply(
            text=text,
            hits=hits[: self.params.candidates],
            timings=all_timings,
            usage=usage,
            prompt=messages,
            mode="grounded",
            finish_reason=str(stats.get("finish_reason", "stop")),
            route=plan.route,
            reason=plan.reason,
            candidates=list(plan.candidates),
            facts=dict(facts.values),
            strategy_id=plan.strategy_id,
        )
        return ReplyStream(iter([text] if text else []), lambda _joined: reply)

    def _draft(
        self,
        history: Sequence[Mapping[str, str]],
        plan: Plan,
        facts: Facts,
        cfg: GenerationConfig,
        window_vec: np.ndarray,
        request_vecs: np.ndarray,
    ) -> tuple[Plan, list[dict[str, str]], dict[str, Any]]:
        """The student's draft, shown only if it passes the gate; otherwise a safe reply."""
        agent = self.agent
        guidance = agent.retrieve(history, vector=window_vec).hits  # the window, embedded by `candidates`
        fallback = PromptConfig.from_mapping({"mode": self.params.fallback, "params": {}})
        messages = render_prompt(agent.system_prompt, history, guidance, fallback)
        t0 = time.perf_counter()
        result = agent.student.chat(messages, cfg)
        stats: dict[str, Any] = {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "evaluated_prompt_tokens": result.usage.evaluated_prompt_tokens,
            "finish_reason": result.finish_reason,
            "generate_ms": (time.perf_counter() - t0) * 1e3,
        }
        earlier = [str(m.get("content", "")) for m in history if m.get("role") == "assistant"]
        from .adapt import context_text

        context = context_text(agent.system_prompt, history) + "\n" + self.planner.vocabulary
        failed = gate_reply(
            result.text,
            context=context,
            earlier=earlier,
            facts=facts,
            specs=self.planner.specs,
            rules=agent.rules,
            rule_check=self.checker.violations if self.checker.semantic else None,
            embed=agent.retriever.embedder.embed if agent.retriever else None,
            domain_vectors=self.domain_vectors,
            request_vecs=request_vecs,
            config=GateConfig(on_domain=self.params.on_domain),
        )
        if not failed:
            return (
                Plan(
                    "generated",
                    plan.reason + "; the draft passed the gate",
                    result.text.strip(),
                    "",
                    plan.candidates,
                ),
                messages,
                stats,
            )
        said = {normalised(e) for e in earlier}
        safe = self.planner.safe(plan.candidates, said, f"the student's draft failed the gate ({failed})")
        stats["completion_tokens"] = 0  # the draft was not shown
        return safe, messages, stats

    def _final(
        self, plan: Plan, history: Sequence[Mapping[str, str]], facts: Facts, cfg: GenerationConfig
    ) -> tuple[str, bool]:
        """The reply as shown, and whether max_tokens cut it: whole sentences while they fit, else
        whole words (as a generating model stops at the cap); never a reply that breaks a rule."""
        text, cut = cap_tokens(plan.text, int(cfg.max_tokens), self.agent.token_count)
        broken = broken_rules(text, self.agent.rules)
        if broken:  # a domain-authored safe reply that breaks a rule is a configuration error; never show it
            log.error("reply on route %s breaks %s; offering a person instead", plan.route, broken)
            return self.planner.replies["handoff"], False
        return text, cut
