"""Judges of evaluated conversations: two LLM judges with validated JSON, and the offline checks.

(a) `ConversationJudge`: the whole conversation on five levels against reference conversations.
(b) `TurnJudge`: each reply's closeness to the reference (teacher) reply, 1-5.
(c) `score_offline`: embedding similarity to the reference reply and policy-rule checks; no LLM.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from distill.metrics import policy_violations, reply_similarity
from distill.roles.schemas import Judgement, MalformedOutput, parse_output, repair_messages
from edge_agent.backends import ChatBackend, GenerationConfig
from edge_agent.conversation import render_transcript
from edge_agent.embedder import Embedder
from edge_agent.policy import PolicyRule

from .records import Conversation

__all__ = ["LEVELS", "ConversationJudge", "TurnJudge", "Verdict", "ask_json", "score_offline"]

log = logging.getLogger(__name__)

LEVELS = {1: "unacceptable", 2: "poor", 3: "acceptable", 4: "good", 5: "excellent"}


class Verdict(BaseModel):
    """The whole-conversation judge's answer."""

    model_config = ConfigDict(extra="ignore")

    score: int = Field(ge=1, le=5)
    reason: str = ""


M = TypeVar("M", bound=BaseModel)


def ask_json(backend: ChatBackend, messages: list[dict[str, str]], model: type[M], config: GenerationConfig,
             retries: int = 1) -> M | None:
    """Ask for a JSON object; on a malformed reply, show the model its error and ask again."""
    for attempt in range(retries + 1):
        text = backend.chat(messages, config).text
        try:
            return parse_output(text, model)
        except MalformedOutput as exc:
            log.info("judge reply malformed (%s), attempt %d", exc, attempt + 1)
            messages = repair_messages(messages, text, str(exc))
    return None


_SCALE = "\n".join(f"{k} = {v}" for k, v in LEVELS.items())


class ConversationJudge:
    """Rates a whole support conversation 1-5 (unacceptable .. excellent) against references."""

    def __init__(self, backend: ChatBackend, policy: str, config: GenerationConfig | None = None,
                 retries: int = 1) -> None:
        self.backend = backend
        self.policy = policy.strip()
        self.config = config or GenerationConfig(max_tokens=160, temperature=0.0)
        self.retries = retries
        self.failures = 0

    def messages(self, conv: Conversation, references: Sequence[Conversation]) -> list[dict[str, str]]:
        refs = "\n\n".join(f"Reference conversation {i + 1} (rated 5, excellent):\n{render_transcript(r.messages())}"
                           for i, r in enumerate(references))
        system = ("You grade customer-support conversations. Rate how well the AGENT served the customer "
                  f"while following the company policy, on this scale:\n{_SCALE}\n"
                  'Answer with only a JSON object: {"score": <1-5>, "reason": "<one sentence>"}.')
        user = (f"Company policy:\n{self.policy}\n\n{refs}\n\n" if refs else f"Company policy:\n{self.policy}\n\n")
        user += f"Conversation to rate:\n{render_transcript(conv.messages())}\n\nYour JSON verdict:"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def judge(self, conv: Conversation, references: Sequence[Conversation] = ()) -> Verdict | None:
        out = ask_json(self.backend, self.messages(conv, references), Verdict, self.config, self.retries)
        if out is None:
            self.failures += 1
        return out


class TurnJudge:
    """Rates 1-5 how close one agent reply comes to the reference reply in serving the customer."""

    def __init__(self, backend: ChatBackend, config: GenerationConfig | None = None, retries: int = 1) -> None:
        self.backend = backend
        self.config = config or GenerationConfig(max_tokens=80, temperature=0.0)
        self.retries = retries
        self.failures = 0

    def messages(self, history: Sequence[dict[str, str]], reply: str, reference: str) -> list[dict[str, str]]:
        system = ("You compare two candidate replies of a support agent to the same conversation. Score 1-5 how "
                  "close reply B comes to reply A in how well it would satisfy the customer (5 = as good as A, "
                  '1 = far worse). Answer with only a JSON object: {"score": <1-5>, "reason": "<short>"}.')
        user = (f"Conversation so far:\n{render_transcript(history)}\n\nReply A (reference):\n{reference}\n\n"
                f"Reply B:\n{reply}\n\nYour JSON verdict:")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def judge_conversation(self, conv: Conversation) -> None:
        """Fill `closeness` on every turn that has a reference reply."""
        history: list[dict[str, str]] = []
        for turn in conv.turns:
            history.append({"role": "user", "content": turn.customer})
            if turn.reference:
                out = ask_json(self.backend, self.messages(history, turn.reply, turn.reference), Judgement,
                               self.config, self.retries)
                if out is None:
                    self.failures += 1
                else:
                    turn.closeness = int(out.score)
            history.append({"role": "assistant", "content": turn.reply})


def score_offline(conversations: Sequence[Conversation], embedder: Embedder | None,
                  rules: Sequence[PolicyRule]) -> None:
    """Fill similarity, per-reply forbidden-rule violations and per-conversation missing steps."""
    required = [r for r in rules if r.kind == "required_step"]
    pairs = [(t, t.reference) for c in conversations for t in c.turns if t.reference]
    if embedder is not None and pairs:
        sims = reply_similarity(embedder, [t.reply for t, _ in pairs], [str(r) for _, r in pairs])
        for (turn, _), sim in zip(pairs, sims):
            turn.similarity = round(float(sim), 6)
    for conv in conversations:
        for turn in conv.turns:
            turn.violations = policy_violations(turn.reply, rules)
        replies = [t.reply for t in conv.turns]
        conv.missing_steps = [r.id for r in required if not any(r.matches(x) for x in replies)]
