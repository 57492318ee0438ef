"""The adapt mode: reuse the nearest scenario's exemplar reply, fitted to this conversation.

A tiny student writes worse replies from scratch than a good reply written for a very similar
situation. Adapting keeps the exemplar's sentences that fit (no names, numbers, dates or
commitments that this conversation and the policy do not contain), optionally lets the student
revise it, and falls back to ordinary generation when the nearest exemplar is not close enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .conversation import query_text
from .errors import ConfigError
from .keys import check_keys
from .policy import PolicyRule
from .rendering import clean_exemplar, revision_prompt, trim_to_tokens
from .retrieval import Hit

__all__ = [
    "AdaptParams",
    "RENDER_PARAMS",
    "Fitted",
    "choose_adapted",
    "fit_exemplar",
    "is_degenerate",
    "params_from_table",
    "revision_prompt",
    "unsupported_facts",
    "rerank_hits",
]

_SENTENCE = re.compile(r"(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bMrs\.)(?<=[.!?])\s+|\n+")
_NUMBER = re.compile(r"[$£€]?\d[\d,.:/-]*%?")
# Month and day names are dates only when capitalised ("it may shift" is not May); the relative
# days are dates in any case.
_MONTHS_DAYS = re.compile(
    r"\b(January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|[Tt]omorrow|[Yy]esterday|[Tt]onight)\b"
)
_HONORIFIC_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+([A-Z][a-zA-Z'-]+)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
# A commitment already made or promised in the exemplar's own conversation.
_COMMITMENT = re.compile(
    r"\b(?:i|we)(?:'ve| have| had|'ll| will)\s+(?:already\s+|just\s+|now\s+|gone ahead and\s+)?"
    r"(?:processed|process|issued|issue|refunded|refund|waived|waive|cancelled|canceled|cancel|rebooked|"
    r"rebook|rescheduled|reschedule|credited|credit|sent|send|booked|book|applied|apply|approved|approve|"
    r"escalated|escalate|noted|updated|arranged|arrange)\b",
    re.IGNORECASE,
)
_COMMON_CAPITALS = {
    "I",
    "I'm",
    "I'll",
    "I've",
    "I'd",
    "Thank",
    "Thanks",
    "Please",
    "Sorry",
    "Hello",
    "Hi",
    "Dear",
    "Yes",
    "No",
    "OK",
    "Okay",
    "Unfortunately",
    "However",
    "Mr",
    "Mrs",
    "Ms",
    "Miss",
    "Dr",
}


T = TypeVar("T")
# Keys the rendering modes read from the same params table (the adapt mode's fallback renders with it).
RENDER_PARAMS = ("form", "exemplar_tokens")


def params_from_table(cls: type[T], params: Mapping[str, Any], where: str, shared: Iterable[str] = ()) -> T:
    """A mode's knobs (the dataclass `cls`) from its prompting params table: an unknown key or a value
    of the wrong type is a one-line ConfigError; `shared` keys are accepted and left to the renderer."""
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    check_keys(params, [*fields, *shared], where)
    values = {}
    for key, value in params.items():
        if key not in fields:
            continue
        default = fields[key].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        values[key] = value
    return cls(**values)


@dataclass(frozen=True)
class AdaptParams:
    """Knobs of the adapt mode, read from PromptConfig.params; unknown keys are errors."""

    min_score: float = 0.6  # retrieval cosine of the nearest scenario; below it, plain generation
    revise: bool = False  # let the student rewrite the fitted exemplar (one more student call)
    max_drop: float = 0.5  # share of exemplar sentences the fit check may drop before giving up
    exemplar_tokens: int = 200  # longest exemplar kept (whole sentences)
    fallback: str = "plain"  # rendering mode used when the exemplar does not fit
    min_revision_words: int = 8
    rerank: float = 0.0  # > 0: also weigh how close each candidate's exemplar is to the customer's message

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AdaptParams:
        """Its own keys, plus the rendering keys its fallback reads from the same table."""
        return params_from_table(cls, params, "adapt-mode params", shared=RENDER_PARAMS)


@dataclass(frozen=True)
class Fitted:
    """The fit check's verdict on one exemplar."""

    text: str
    kept: int
    dropped: list[str] = field(default_factory=list)  # the sentences removed, for logs and tests
    ok: bool = True
    reason: str = ""


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def unsupported_facts(sentence: str, context: str, rules: Sequence[PolicyRule] = ()) -> list[str]:
    """Names, numbers, dates and commitments in `sentence` that `context` does not support."""
    low = context.lower()
    found: list[str] = []
    for m in _NUMBER.finditer(sentence):
        token = m.group(0).rstrip(".,:/-")
        if token and token.lower() not in low:
            found.append(token)
    for m in _MONTHS_DAYS.finditer(sentence):
        if m.group(1).lower() not in low:
            found.append(m.group(1))
    for m in _HONORIFIC_NAME.finditer(sentence):
        if m.group(1).lower() not in low:
            found.append(m.group(1))
    for word in _WORD.findall(sentence)[1:]:  # the first word is capitalised anyway
        if (
            word[0].isupper()
            and word not in _COMMON_CAPITALS
            and not re.search(rf"\b{re.escape(word.lower())}\b", low)
        ):
            found.append(word)
    commitment = _COMMITMENT.search(sentence)
    if commitment:
        found.append(commitment.group(0))
    found += [f"rule:{r.id}" for r in rules if r.kind.startswith("forbidden") and r.matches(sentence)]
    return list(dict.fromkeys(found))


def fit_exemplar(
    exemplar: str, context: str, rules: Sequence[PolicyRule] = (), params: AdaptParams = AdaptParams()
) -> Fitted:
    """Drop the exemplar's sentences that carry unsupported facts; fail if too many go."""
    sentences = _sentences(trim_to_tokens(clean_exemplar(exemplar), params.exemplar_tokens))
    if not sentences:
        return Fitted(text="", kept=0, ok=False, reason="empty exemplar")
    kept: list[str] = []
    dropped: list[str] = []
    for s in sentences:
        (dropped if unsupported_facts(s, context, rules) else kept).append(s)
    if not kept or len(dropped) > params.max_drop * len(sentences):
        return Fitted(
            text=" ".join(kept),
            kept=len(kept),
            dropped=dropped,
            ok=False,
            reason=f"{len(dropped)} of {len(sentences)} sentences carry facts not in the conversation",
        )
    return Fitted(text=" ".join(kept), kept=len(kept), dropped=dropped)


def is_degenerate(text: str, min_words: int = 8) -> bool:
    """Too short, or looping (a sentence repeated), or echoing the prompt's markers."""
    sentences = [s.lower() for s in _sentences(text)]
    if len(text.split()) < min_words or "[[" in text:
        return True
    return len(set(sentences)) < len(sentences)


def context_text(system_prompt: str, history: Sequence[Mapping[str, str]]) -> str:
    """Everything a fitted reply may draw facts from: the policy and the whole conversation."""
    return system_prompt + "\n" + query_text(history, 0)


def rerank_hits(
    hits: Sequence[Hit], message_vec: np.ndarray, exemplar_vecs: np.ndarray, weight: float
) -> list[Hit]:
    """Hits ordered by scenario score + weight x cosine(customer message, hit's exemplar)."""
    combined = [h.score + weight * float(v @ message_vec) for h, v in zip(hits, exemplar_vecs)]
    return [hits[i] for i in sorted(range(len(hits)), key=lambda i: -combined[i])]


def choose_adapted(
    system_prompt: str,
    history: Sequence[Mapping[str, str]],
    hits: Sequence[Hit],
    params: Mapping[str, Any],
    rules: Sequence[PolicyRule],
    generate: Callable[[list[dict[str, str]]], str],
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[str, str]:
    """(reply, route) where route is "exemplar", "revised" or "fallback:<why>".

    `generate` runs the student on messages (a revision prompt); the caller does the fallback
    generation itself so it can stream it.
    """
    cfg = AdaptParams.from_params(params)
    hits = [h for h in hits if h.strategy.exemplar.strip()]
    if cfg.rerank > 0 and embed is not None and len(hits) > 1:
        vecs = embed([query_text(history, 1), *(clean_exemplar(h.strategy.exemplar) for h in hits)])
        hits = rerank_hits(hits, vecs[0], vecs[1:], cfg.rerank)
    if not hits:
        return "", "fallback:no exemplar"
    if hits[0].score < cfg.min_score:
        return "", f"fallback:score {hits[0].score:.2f} < {cfg.min_score}"
    context = context_text(system_prompt, history)
    fitted = fit_exemplar(hits[0].strategy.exemplar, context, rules, cfg)
    if not fitted.ok:
        return "", f"fallback:{fitted.reason}"
    said = {" ".join(str(m.get("content", "")).split()) for m in history if m.get("role") == "assistant"}
    if " ".join(fitted.text.split()) in said:
        return "", "fallback:repeat"  # never answer with a reply already given in this conversation
    if not cfg.revise:
        return fitted.text, "exemplar"
    revised = generate(revision_prompt(system_prompt, history, hits, {**dict(params), "draft": fitted.text}))
    check = fit_exemplar(revised, context, rules, cfg)
    if is_degenerate(revised, cfg.min_revision_words) or not check.ok:
        return fitted.text, "exemplar"
    return check.text, "revised"
