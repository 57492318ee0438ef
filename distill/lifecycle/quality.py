"""Content checks for distilled strategies: what makes an entry garbage, and the run's verdict on it.

Pure functions over plain text. `problems` names what is wrong with one entry (a score under the
minimum, empty or placeholder guidance, text about the output instead of advice, a scenario where
the simulated customer speaks as the agent); `reject` marks such an entry `rejected` with the
reasons in its provenance; `quality_summary` counts kept and rejected entries and warns when
most of a run scores at the bottom. Nothing here calls a model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from edge_agent.conversation import parse_transcript
from edge_agent.library import Strategy

__all__ = ["BOTTOM_SHARE", "problems", "quality_summary", "reject", "text_problems"]

BOTTOM_SHARE = 0.5  # above this share of scored entries at score 1, the run summary warns
_MIN_WORDS = 3

# Guidance that is only a stand-in: dots, dashes, "TODO", "N/A", template slots.
_PLACEHOLDER = re.compile(
    r"^\W*$|^\s*(?:\.{2,}|…|-+|n/?a|none|null|todo|tbd|placeholder|lorem ipsum\b.*|\.\.\.\s*etc\.?)\s*$|"
    r"<\s*(?:insert|your|placeholder|strategy|text)[^>]*>|\[\s*(?:insert|placeholder|todo)[^\]]*\]|"
    r"\{\{?\s*\w+\s*\}?\}|\blorem ipsum\b", re.IGNORECASE)
# Text about the model's own output or the request rather than advice for the agent.
_META = re.compile(
    r"\b(?:this|the following|here is|here's|below is)\b[^.\n]{0,30}\b(?:json|object|output|format|schema)\b"
    r"[^.\n]{0,40}\b(?:contains?|includes?|represents?|shows?|provides?|with|of|that|from)\b|"
    r"\bthe previous (?:response|answer|output|message)\b|\bas an ai\b|"
    r"\bi (?:cannot|can't|am unable to) (?:help|assist|comply)|\blanguage model\b|"
    r"\b(?:json|the schema|the keys?)\b[^.\n]{0,20}\b(?:items|compact|do|avoid)\b[^.\n]{0,10}\bfields?\b",
    re.IGNORECASE)
# Phrases that an agent says and a customer does not; in a CUSTOMER line they mean the simulator
# swapped roles, and the scenario teaches the student nothing about real customers.
_AGENT_SPEECH = re.compile(
    r"\bhow (?:can|may) i (?:help|assist) you\b|\bthank you for (?:contacting|reaching out to|calling)\b|"
    r"\bis there anything else i can (?:help|do)\b|\bwhat can i (?:help|do) (?:you )?with\b|"
    r"\bi(?:'d| would) be (?:happy|glad) to (?:help|assist) you\b|\bwelcome to (?:our|the)\b[^.\n]{0,30}"
    r"\b(?:support|help desk|service)\b|\bas your (?:support )?agent\b", re.IGNORECASE)


def text_problems(name: str, text: str) -> list[str]:
    """Why one piece of guidance text is unusable (empty when it is fine)."""
    clean = " ".join(text.split())
    if not clean:
        return [f"empty {name}"]
    if _PLACEHOLDER.search(clean):
        return [f"placeholder {name} ({clean[:30]!r})"]
    if len(re.findall(r"[A-Za-z]{2,}", clean)) < _MIN_WORDS:
        return [f"{name} too short to advise anything ({clean[:30]!r})"]
    if _META.search(clean):
        return [f"{name} talks about the output, not the customer ({clean[:50]!r})"]
    return []


def problems(strategy: Strategy, *, min_score: int) -> list[str]:
    """Every reason to reject a distilled entry; an entry with none is kept."""
    found: list[str] = []
    score = strategy.provenance.get("best_score")
    if isinstance(score, (int, float)) and score < min_score:
        found.append(f"best score {int(score)} is below the minimum {min_score}")
    for name in ("strategy", "compact"):
        found += text_problems(name, str(getattr(strategy, name)))
    if not strategy.exemplar.strip():
        found.append("empty exemplar")
    for line in (m["content"] for m in parse_transcript(strategy.scenario) if m["role"] == "user"):
        if _AGENT_SPEECH.search(line):
            found.append(f"the customer speaks as the agent ({line[:50]!r})")
            break
    return found


def reject(strategy: Strategy, reasons: Sequence[str]) -> Strategy:
    """The entry marked rejected, with the reasons in `provenance.rejected` (shown by `library show`)."""
    return strategy.replace(status="rejected", provenance={**dict(strategy.provenance), "rejected": list(reasons)})


def _kind(reason: str) -> str:
    """A reason's family for counting ("best score 1 is below ..." -> "score below minimum")."""
    if reason.startswith("best score"):
        return "score below minimum"
    if reason.startswith("the customer speaks"):
        return "customer speaks as the agent"
    for word in ("placeholder", "too short", "talks about the output", "empty"):
        if word in reason:
            return {"talks about the output": "meta text", "too short": "too short"}.get(word, word)
    return reason


def quality_summary(kept: Sequence[Strategy], rejected: Sequence[Strategy], *, min_score: int) -> dict[str, Any]:
    """Counts for the run report, and a warning when most entries score at the bottom."""
    reasons: Counter[str] = Counter()
    for s in rejected:
        for kind in {_kind(r) for r in s.provenance.get("rejected", [])}:
            reasons[kind] += 1
    scores = [int(s.provenance["best_score"]) for s in (*kept, *rejected)
              if isinstance(s.provenance.get("best_score"), (int, float))]
    histogram = {str(k): scores.count(k) for k in range(1, 6)}
    bottom = scores.count(1)
    warning = ""
    if scores and bottom / len(scores) > BOTTOM_SHARE:
        warning = (f"{bottom} of {len(scores)} strategies scored 1, the lowest: is the teacher strong enough "
                   "for this domain? Try a stronger teacher; the judge's reasons are in each entry's provenance.")
    return {"kept": len(kept), "rejected": len(rejected), "min_score": min_score,
            "reasons": dict(sorted(reasons.items())), "scores": histogram, "warning": warning}
