"""The reply gate: a student-written draft is shown only if it passes every check here.

Checks, cheapest first: not empty, looping or echoing prompt/template markers; on the domain's
subject (cosine to the domain's own replies); no names, numbers, dates or commitments that the
policy and the conversation do not contain; no claim of a fact that is not established; no rule
broken; not a repeat. Pure functions over text plus an embedder callable; no model is loaded here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .adapt import is_degenerate, unsupported_facts
from .facts import Facts, FactSpec, claimed_facts
from .policy import PolicyRule

__all__ = ["LEAK", "GateConfig", "gate_reply", "normalised", "unestablished_claims"]

# Chat-template control text, role labels at a line start, and the prompt's guidance markers.
LEAK = re.compile(
    r"<\|[a-z_]{2,20}\|>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>|<\|?(?:im_start|im_end|eot_id|endoftext)"
    r"|^\s*(?:CUSTOMER|AGENT|USER|ASSISTANT|SYSTEM)\s*:|\[\[|\]\]|AGENT GUIDANCE|DRAFT REPLY|\ufffd",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class GateConfig:
    on_domain: float = 0.4  # least cosine between the draft and its nearest domain reply
    answers: float = 0.3  # least cosine between the draft and the customer's latest request
    min_words: int = 4


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def broken_rules(text: str, rules: Sequence[PolicyRule],
                 rule_check: Callable[[str], list[str]] | None = None) -> list[str]:
    """Ids of the forbidden rules `text` breaks: by pattern, then whatever `rule_check` adds (by meaning)."""
    broken = [r.id for r in rules if r.kind.startswith("forbidden") and r.matches(text)]
    if rule_check is not None:
        broken += [r for r in rule_check(text) if r not in broken]
    return broken


def unestablished_claims(text: str, specs: Sequence[FactSpec], facts: Facts) -> list[str]:
    """Conditions `text` asserts that do not hold in this conversation ("outage_confirmed", "!x")."""
    return [str(c) for c in claimed_facts(text, specs) if facts.holds(c) is not True]


def gate_reply(
    text: str,
    *,
    context: str,
    earlier: Sequence[str],
    facts: Facts,
    specs: Sequence[FactSpec] = (),
    rules: Sequence[PolicyRule] = (),
    rule_check: Callable[[str], list[str]] | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    domain_vectors: np.ndarray | None = None,
    request_vecs: np.ndarray | None = None,
    config: GateConfig = GateConfig(),
) -> str:
    """ "" when the draft may be shown, else the first reason it may not."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    leak = LEAK.search(stripped)
    if leak:
        return f"echoes a marker {leak.group(0)!r}"
    if is_degenerate(stripped, config.min_words):
        return "degenerate (too short or looping)"
    if embed is not None and (domain_vectors is not None and len(domain_vectors) or request_vecs is not None):
        vec = embed([stripped])[0]
        if domain_vectors is not None and len(domain_vectors):
            score = float(np.max(domain_vectors @ vec))
            if score < config.on_domain:
                return f"off-domain (nearest domain reply {score:.2f} < {config.on_domain})"
        if request_vecs is not None:
            score = float(np.max(np.atleast_2d(request_vecs) @ vec))
            if score < config.answers:
                return f"does not answer the latest message ({score:.2f} < {config.answers})"
    for sentence in (s for s in _SENTENCE.split(stripped) if s.strip()):
        found = unsupported_facts(sentence, context, rules)
        if found:
            return f"unsupported {', '.join(found[:3])}"
    claims = unestablished_claims(stripped, specs, facts)
    if claims:
        return f"claims {', '.join(claims)}: not established"
    broken = broken_rules(stripped, rules, rule_check)
    if broken:
        return f"breaks rule {', '.join(broken)}"
    if normalised(stripped) in {normalised(e) for e in earlier}:
        return "repeats an earlier reply"
    return ""
