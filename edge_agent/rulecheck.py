"""Checks a text against the domain's forbidden rules: by pattern, and by meaning.

A rule may carry `examples` (sentences that violate it) and `compliant` (near misses that do
not). A sentence violates the rule when the rule's regex matches it, or when its embedding is
within `threshold` cosine of a violating example and closer to that than to any compliant one.
Only sentences that commit to something and do not refuse ("I can't offer a full refund") are
compared by meaning: a sentence embedder cannot tell a promise from its refusal. Pure numpy over an
`Embedder`; no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .embedder import Embedder
from .policy import PolicyRule

__all__ = ["DEFAULT_THRESHOLD", "RuleChecker", "RuleMatch", "split_sentences"]

# Cosine (all-MiniLM-L6-v2, int8) above which a sentence counts as saying what an example says;
# measured on the demo rules' examples against the demo library (see docs/hardening.md).
DEFAULT_THRESHOLD = 0.65
FORBIDDEN_KINDS = ("forbidden_promise", "forbidden_phrase")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Only sentences that commit to something are compared by meaning: a person with a future or modal
# verb, or a giveaway word. "Be honest that the fee applies" shares the topic of "I'll waive the fee"
# (cosine 0.83) but commits to nothing; the embedder alone cannot tell them apart.
_COMMITMENT = re.compile(
    r"\b(?:i|we|you|they|it|that|this)(?:'ll|'d| will| would| can| could| shall|'m going to| am going to|'re going "
    r"to| are going to| get| won't| will not)\b|\b(?:on us|on the house|free|no cost|no charge|nothing|waived?|"
    r"gone|covered|back|refund\w*|match\w*|consider)\b", re.IGNORECASE)
_NEGATION = re.compile(
    r"\b(?:not|no(?!\s+(?:worries|problem|doubt)\b)|never|cannot|can't|cant|won't|wont|don't(?!\s+worry\b)|doesn't|isn't|aren't|wasn't|shouldn't|mustn't|"
    r"unable|unfortunately|only if|only when|unless|afraid)\b|n't\b(?<!don't)", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Non-empty sentences (split at . ! ? followed by space, and at line breaks)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


@dataclass(frozen=True)
class RuleMatch:
    """One violation: the rule, the sentence, how it was found ("pattern" | "example") and the
    cosine to the nearest violating example (1.0 for a pattern match)."""

    rule: str
    sentence: str
    how: str
    score: float
    example: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RuleChecker:
    """Finds which forbidden rules a text breaks; examples are embedded once, at construction."""

    def __init__(self, rules: Sequence[PolicyRule], embedder: Embedder | None = None,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.rules = [r for r in rules if r.kind in FORBIDDEN_KINDS]
        self.embedder = embedder
        self.threshold = float(threshold)
        self._patterns = [re.compile(r.pattern, re.IGNORECASE) for r in self.rules]
        owners: list[tuple[int, bool]] = []  # (rule index, violating?) per example row
        texts: list[str] = []
        for i, rule in enumerate(self.rules):
            for text in getattr(rule, "examples", ()) or ():
                owners.append((i, True))
                texts.append(str(text))
            for text in getattr(rule, "compliant", ()) or ():
                owners.append((i, False))
                texts.append(str(text))
        self._owners = owners
        self._texts = texts
        self._vectors: np.ndarray | None = None
        if embedder is not None and any(bad for _, bad in owners):
            self._vectors = np.asarray(embedder.embed(texts), dtype=np.float32)

    @property
    def semantic(self) -> bool:
        """True when at least one rule is also checked by meaning."""
        return self._vectors is not None

    def matches(self, text: str, *, skip: Any = None) -> list[RuleMatch]:
        """Every (rule, sentence) violation in `text`, in rule order then sentence order.

        `skip(sentence) -> bool` leaves a sentence out of both checks (lint uses it for guidance
        sentences that forbid the thing: "Never promise a free visit").
        """
        sentences = [s for s in split_sentences(text) if not (skip and skip(s))]
        if not sentences or not self.rules:
            return []
        found: dict[tuple[int, int], RuleMatch] = {}
        for r, pattern in enumerate(self._patterns):
            for k, sentence in enumerate(sentences):
                if pattern.search(sentence):
                    found[(r, k)] = RuleMatch(self.rules[r].id, sentence, "pattern", 1.0)
            whole = None if any(key[0] == r for key in found) or skip else pattern.search(text)
            if whole is not None:  # a pattern that spans sentences
                found[(r, -1)] = RuleMatch(self.rules[r].id, whole.group(0).strip(), "pattern", 1.0)
        if self._vectors is not None and self.embedder is not None:
            open_rows = [k for k, s in enumerate(sentences) if _COMMITMENT.search(s) and not _NEGATION.search(s)]
            if open_rows:
                queries = np.asarray(self.embedder.embed([sentences[k] for k in open_rows]), dtype=np.float32)
                sims = queries @ self._vectors.T  # (sentences, examples)
                for row, k in enumerate(open_rows):
                    for r in range(len(self.rules)):
                        if (r, k) in found:
                            continue
                        hit = self._judge(sims[row], r)
                        if hit is not None:
                            score, example = hit
                            found[(r, k)] = RuleMatch(self.rules[r].id, sentences[k], "example", score, example)
        return [found[key] for key in sorted(found)]

    def _judge(self, sims: np.ndarray, rule: int) -> tuple[float, str] | None:
        bad = [j for j, (i, violating) in enumerate(self._owners) if i == rule and violating]
        if not bad:
            return None
        best = max(bad, key=lambda j: sims[j])
        score = float(sims[best])
        if score < self.threshold:
            return None
        good = [float(sims[j]) for j, (i, violating) in enumerate(self._owners) if i == rule and not violating]
        if good and max(good) >= score:
            return None
        return score, self._texts[best]

    def violations(self, text: str) -> list[str]:
        """Ids of the rules `text` breaks (by pattern or by meaning), in rule order, each once."""
        return list(dict.fromkeys(m.rule for m in self.matches(text)))
