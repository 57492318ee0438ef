"""Evaluation conditions and the responders that play them.

base: the student with the system prompt only. guidelines: the same plus one generic guideline.
pack: the student through `edge_agent.agent.Agent` (the device's retrieval and prompt assembly).
teacher: the teacher endpoint itself. transfer: the pack with a second student GGUF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.agent import Agent
from edge_agent.backends import LLAMA_CPP, ChatBackend, GenerationConfig, make_backend
from edge_agent.errors import ConfigError
from edge_agent.pack import Pack
from edge_agent.rendering import PromptConfig
from edge_agent.runtime import RuntimeConfig

__all__ = [
    "GLOBAL_GUIDELINE",
    "KINDS",
    "AgentResponder",
    "ChatResponder",
    "Condition",
    "StudentLoader",
    "TurnOutput",
    "build_responders",
    "parse_condition",
]

KINDS = ("base", "guidelines", "pack", "teacher", "transfer")
STUDENT_KINDS = ("base", "guidelines", "pack", "transfer")

# One guideline for every turn: the paper's "global guidelines" baseline, written for this project.
GLOBAL_GUIDELINE = (
    "Guideline for every reply: first acknowledge how the customer feels in one short sentence; then say "
    "plainly what you can and cannot do under the policy; offer the concrete options the policy allows; "
    "ask for any detail you still need; never promise anything the policy does not allow; keep it brief "
    "and polite, and close by asking whether there is anything else you can help with."
)


@dataclass(frozen=True)
class Condition:
    """A named way of producing agent replies. `model` is a registry name or GGUF path."""

    name: str
    kind: str
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "model": self.model}


def parse_condition(text: str, *, model: str | None = None, transfer_model: str | None = None) -> Condition:
    """'KIND', or 'NAME=KIND', optionally with '@MODEL' (e.g. 'tiny=pack@./other.gguf')."""
    name, _, spec = text.partition("=") if "=" in text else (text.split("@")[0], "", text)
    kind, _, explicit = spec.partition("@")
    kind, name = kind.strip(), name.strip()
    if kind not in KINDS:
        raise ConfigError(f"unknown condition kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    chosen: str | None = explicit.strip() or None
    if chosen is None and kind in STUDENT_KINDS:
        chosen = transfer_model if kind == "transfer" else model
    if kind == "transfer" and chosen is None:
        raise ConfigError("the transfer condition needs a second student: pass --transfer-model NAME_OR_GGUF "
                          "or write transfer@MODEL")
    return Condition(name=name or kind, kind=kind, model=chosen)


@dataclass
class TurnOutput:
    text: str
    strategies: list[str] = field(default_factory=list)
    latency_ms: float = 0.0


class AgentResponder:
    """A condition played by an `Agent` (student, optional retrieval)."""

    def __init__(self, name: str, agent: Agent) -> None:
        self.name = name
        self.agent = agent

    def respond(self, history: Sequence[Mapping[str, str]], seed: int | None = None) -> TurnOutput:
        reply = self.agent.reply(history, generation=self.agent.generation.merged(seed=seed))
        return TurnOutput(text=reply.text, strategies=[h.strategy.id for h in reply.hits],
                          latency_ms=float(reply.timings.get("total_ms", 0.0)))


class ChatResponder:
    """A condition played by a chat backend directly (the teacher)."""

    def __init__(self, name: str, backend: ChatBackend, system_prompt: str, generation: GenerationConfig) -> None:
        self.name = name
        self.backend = backend
        self.system_prompt = system_prompt
        self.generation = generation

    def messages(self, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt},
                *({"role": m["role"], "content": m["content"]} for m in history if m["role"] != "system")]

    def respond(self, history: Sequence[Mapping[str, str]], seed: int | None = None) -> TurnOutput:
        # The teacher ignores the seed: a fixed request keeps its cached reply valid across trials.
        t0 = time.perf_counter()
        text = self.backend.chat(self.messages(history), self.generation).text.strip()
        return TurnOutput(text=text, latency_ms=(time.perf_counter() - t0) * 1e3)

    def reference(self, history: Sequence[Mapping[str, str]]) -> str:
        return self.respond(history).text


# model name or path -> (backend, generation defaults of that model)
StudentLoader = Callable[[str | None], tuple[ChatBackend, Mapping[str, Any]]]


def default_student_loader(runtime: RuntimeConfig | None = None) -> StudentLoader:
    """Loads each GGUF once (by registry name, through the backend registry) and shares it between
    conditions; `runtime` (threads, wait policy) is what the CLI read from the environment."""
    loaded: dict[str, tuple[ChatBackend, Mapping[str, Any]]] = {}

    def load(model: str | None) -> tuple[ChatBackend, Mapping[str, Any]]:
        from edge_agent.models import resolve_model

        spec = resolve_model(model)
        if spec.name not in loaded:
            loaded[spec.name] = (make_backend(LLAMA_CPP, spec=spec, runtime=runtime), dict(spec.generation))
        return loaded[spec.name]

    return load


def build_responders(conditions: Sequence[Condition], *, system_prompt: str, pack: Pack | None,
                     teacher: ChatBackend | None, load_student: StudentLoader | None = None,
                     guideline: str = GLOBAL_GUIDELINE, generation: Mapping[str, Any] | None = None,
                     domain_generation: Mapping[str, Any] | None = None,
                     teacher_generation: GenerationConfig | None = None) -> dict[str, Any]:
    """One responder per condition, keyed by condition name (names must be unique)."""
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise ConfigError(f"condition names must be unique, got {', '.join(names)}; name them NAME=KIND")
    load = load_student or default_student_loader()
    settings = pack.settings.table("generation") if pack is not None else dict(domain_generation or {})
    out: dict[str, Any] = {}
    for cond in conditions:
        if cond.kind == "teacher":
            if teacher is None:
                raise ConfigError("the teacher condition needs a teacher endpoint; pass --teacher-url "
                                  "(or drop the condition)")
            out[cond.name] = ChatResponder(cond.name, teacher, system_prompt,
                                           teacher_generation or GenerationConfig(max_tokens=200))
            continue
        student, defaults = load(cond.model)
        gen = GenerationConfig().merged(**dict(defaults)).merged(**settings).merged(**dict(generation or {}))
        if cond.kind in ("pack", "transfer"):
            if pack is None:
                raise ConfigError(f"condition {cond.name!r} needs a pack; pass --pack DIR "
                                  "(built with edge-agent pack build)")
            agent = Agent.from_pack(pack, student=student, generation=dict(gen.__dict__))
        else:
            prompt = system_prompt if cond.kind == "base" else f"{system_prompt}\n\n{guideline.strip()}"
            agent = Agent(student, system_prompt=prompt, prompting=PromptConfig(mode="plain"), generation=gen)
        out[cond.name] = AgentResponder(cond.name, agent)
    return out
