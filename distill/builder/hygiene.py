"""Library hygiene: near-duplicate scenarios collapse into the better strategy, with a record of it.

`dedupe` is pure: candidates are visited best first (score, then earlier stage, then id) and one
whose scenario vector is within `threshold` cosine of an already kept one is merged into it. The
kept strategy's provenance lists what it absorbed, so nothing disappears without a trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_agent.library import Strategy

__all__ = ["Merge", "apply_merges", "dedupe"]


@dataclass(frozen=True)
class Merge:
    kept: str
    dropped: str
    cosine: float
    dropped_score: int

    def to_json(self) -> dict[str, Any]:
        return {"kept": self.kept, "dropped": self.dropped, "cosine": round(self.cosine, 4),
                "dropped_score": self.dropped_score}


def _score(s: Strategy) -> int:
    return int(s.provenance.get("best_score", 0) or 0)


def _stage(s: Strategy) -> int:
    return int(s.provenance.get("stage", 0) or 0)


def dedupe(strategies: Sequence[Strategy], vectors: np.ndarray, threshold: float) -> tuple[list[int], list[Merge]]:
    """Rows to keep (in their original order) and the merges made."""
    order = sorted(range(len(strategies)), key=lambda i: (-_score(strategies[i]), _stage(strategies[i]),
                                                          strategies[i].id))
    kept: list[int] = []
    merges: list[Merge] = []
    seen_ids: dict[str, int] = {}
    for i in order:
        s = strategies[i]
        if s.id in seen_ids:  # the same scenario text twice: the better one is already kept
            merges.append(Merge(kept=strategies[seen_ids[s.id]].id, dropped=s.id, cosine=1.0, dropped_score=_score(s)))
            continue
        if kept:
            sims = vectors[kept] @ vectors[i]
            j = int(np.argmax(sims))
            if float(sims[j]) >= threshold:
                merges.append(Merge(kept=strategies[kept[j]].id, dropped=s.id, cosine=float(sims[j]),
                                    dropped_score=_score(s)))
                continue
        kept.append(i)
        seen_ids[s.id] = i
    return sorted(kept), merges


def apply_merges(strategies: Sequence[Strategy], keep: Sequence[int], merges: Sequence[Merge]) -> list[Strategy]:
    """The kept strategies, each with the ids it absorbed added to `provenance["merged"]`."""
    absorbed: dict[str, list[dict[str, Any]]] = {}
    for m in merges:
        absorbed.setdefault(m.kept, []).append({"id": m.dropped, "cosine": round(m.cosine, 4),
                                                "score": m.dropped_score})
    out = []
    for i in keep:
        s = strategies[i]
        if s.id in absorbed:
            merged = [*s.provenance.get("merged", []), *absorbed[s.id]]
            s = s.replace(provenance={**dict(s.provenance), "merged": merged})
        out.append(s)
    return out
