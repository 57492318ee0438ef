"""Conversations: a simulated customer (any ChatBackend) against a condition's responder, or a replay.

`simulate` plays the customer live; `replay` feeds recorded customer turns to a responder, either
on the recorded context (each reply compared to the recorded reference reply: exact, offline) or on
the responder's own previous replies. Neither function scores anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from edge_agent.backends import ChatBackend, GenerationConfig
from edge_agent.domain import Domain
from edge_agent.errors import ConfigError

from .records import Case, Conversation, Turn

__all__ = [
    "CONTEXTS",
    "END_MARK",
    "AgentTurn",
    "Responder",
    "clean_customer_text",
    "customer_prompt",
    "replay",
    "simulate",
]

END_MARK = "[END]"
CONTEXTS = ("reference", "own")
ReferenceFn = Callable[[Sequence[Mapping[str, str]]], "str | None"]


class AgentTurn(Protocol):
    text: str
    strategies: list[str]
    latency_ms: float


class Responder(Protocol):
    """One condition's agent: history (ending with the customer) in, one reply out."""

    name: str

    def respond(self, history: Sequence[Mapping[str, str]], seed: int | None = None) -> AgentTurn:
        ...


def _describe(persona: Mapping[str, object]) -> str:
    parts = []
    for key in sorted(persona):
        value = persona[key]
        label = key.replace("_", " ")
        if isinstance(value, bool):
            parts.append(f"{label}: {'yes' if value else 'no'}")
        else:
            parts.append(f"{label}: {value}")
    return "; ".join(parts) or "an ordinary customer"


def customer_prompt(domain: Domain, case: Case) -> str:
    """System prompt for the simulated customer of one case."""
    lines = [
        f"You are role-playing a customer who is chatting with support at {domain.company}.",
        f"Your persona: {_describe(case.persona)}.",
        f"Your problem: {case.intent_description}",
    ]
    if case.customer_goal:
        lines.append(f"What you want: {case.customer_goal}")
    if case.opening:
        lines.append(f"You might open with something like: \"{case.opening}\"")
    lines.append("Write only the customer's next chat message, one to three sentences, in character. Never "
                 f"write the agent's lines. When you are satisfied or want to stop, end the message with {END_MARK}.")
    return "\n".join(lines)


_LABEL = re.compile(r"^\s*(customer|you|me|user)\s*:\s*", re.IGNORECASE)
_OTHER_SIDE = re.compile(r"\n\s*(agent|support|assistant|representative)\s*:", re.IGNORECASE)


def clean_customer_text(text: str) -> tuple[str, bool]:
    """The customer's message without labels or an invented agent reply, and whether it ended the chat."""
    text = _LABEL.sub("", text.strip())
    cut = _OTHER_SIDE.search(text)
    if cut:
        text = text[: cut.start()]
    ended = END_MARK.lower() in text.lower()
    text = re.sub(re.escape(END_MARK), "", text, flags=re.IGNORECASE).strip().strip('"').strip()
    return text, ended


def _customer_turn(simulator: ChatBackend, system: str, history: Sequence[Mapping[str, str]], greeting: str,
                   config: GenerationConfig) -> tuple[str, bool]:
    # The simulator plays the customer, so roles flip: the agent's lines are its "user" input.
    flipped = [{"role": "system", "content": system}, {"role": "user", "content": greeting}]
    for m in history:
        flipped.append({"role": "assistant" if m["role"] == "user" else "user", "content": m["content"]})
    return clean_customer_text(simulator.chat(flipped, config).text)


def simulate(case: Case, responder: Responder, simulator: ChatBackend, domain: Domain, *, max_turns: int,
             generation: GenerationConfig | None = None, reference: ReferenceFn | None = None) -> Conversation:
    """A live conversation of up to `max_turns` customer turns; stops when the customer ends it."""
    if max_turns < 1:
        raise ConfigError("--turns must be at least 1")
    system = customer_prompt(domain, case)
    greeting = domain.greeting or f"Hello, this is {domain.company} support. How can I help?"
    base = generation or GenerationConfig(temperature=0.3, max_tokens=120)
    history: list[dict[str, str]] = []
    conv = Conversation(condition=responder.name, case=case)
    for n in range(max_turns):
        text, ended = _customer_turn(simulator, system, history, greeting, base.merged(seed=case.seed + n))
        if not text:
            if n > 0:
                break
            text = case.opening or case.intent_description
        history.append({"role": "user", "content": text})
        out = responder.respond(history, seed=case.seed + n)
        ref = reference(history) if reference is not None else None
        conv.turns.append(Turn(customer=text, reply=out.text, reference=ref, strategies=list(out.strategies),
                               latency_ms=out.latency_ms))
        history.append({"role": "assistant", "content": out.text})
        if ended:
            break
    return conv


def replay(recorded: Conversation, responder: Responder, *, context: str = "reference",
           reference: ReferenceFn | None = None) -> Conversation:
    """Recorded customer turns against `responder`.

    context 'reference': each reply continues the recorded conversation and is compared to the
    recorded reply. context 'own': the responder's replies stay in the history; the reference is
    `reference(history)` when given, else the recorded reply at the same turn (an approximation).
    """
    if context not in CONTEXTS:
        raise ConfigError(f"replay context {context!r} is not one of {', '.join(CONTEXTS)}")
    history: list[dict[str, str]] = []
    conv = Conversation(condition=responder.name, case=recorded.case)
    for n, turn in enumerate(recorded.turns):
        history.append({"role": "user", "content": turn.customer})
        out = responder.respond(history, seed=recorded.case.seed + n)
        ref = turn.reply or None
        if context == "own" and reference is not None:
            ref = reference(history)
        conv.turns.append(Turn(customer=turn.customer, reply=out.text, reference=ref,
                               strategies=list(out.strategies), latency_ms=out.latency_ms))
        history.append({"role": "assistant", "content": turn.reply if context == "reference" else out.text})
    return conv
