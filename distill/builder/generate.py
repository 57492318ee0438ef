"""Scenario generation: after a stage, the teacher proposes new customer situations aimed at the
scenarios where the student scored worst; they join the next stage, with the reason recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from edge_agent.domain import Domain

from ..roles.caller import Caller, StructuredFailure
from ..roles.schemas import Situations
from .improve import Outcome
from .prompts import generator_messages

__all__ = ["generate_situations", "worst_outcomes"]


def worst_outcomes(outcomes: Sequence[Outcome], k: int) -> list[Outcome]:
    """The k successful outcomes with the lowest best score (ties: lowest first-round score, then id)."""
    ok = [o for o in outcomes if o.status == "ok" and o.rounds]
    ok.sort(key=lambda o: (o.best_score, o.rounds[0].score, o.scenario.id))
    return ok[:k]


async def generate_situations(domain: Domain, outcomes: Sequence[Outcome], *, stage: int, n: int, worst: int,
                              caller: Caller) -> tuple[list[dict[str, Any]], str]:
    """New situations (as intent-like dicts) and a failure reason ("" when it worked)."""
    weak = worst_outcomes(outcomes, worst)
    if n <= 0 or not weak:
        return [], "" if n <= 0 else "no successful scenarios to learn from"
    cases = [{"transcript": o.scenario.transcript, "score": o.best_score, "reason": o.rounds[o.best].reason}
             for o in weak]
    try:
        result = await caller.structured("generator", generator_messages(domain, cases, n), Situations)
    except StructuredFailure as exc:
        return [], str(exc)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for s in result.situations[:n]:
        sid = f"g{stage}-{hashlib.sha256(s.title.strip().lower().encode()).hexdigest()[:8]}"
        if sid in seen:
            continue
        seen.add(sid)
        out.append({"id": sid, "description": s.description, "customer_goal": s.customer_goal,
                    "opening": s.opening, "source": "generated", "title": s.title, "why": s.why,
                    "from_stage": stage, "aimed_at": [o.scenario.id for o in weak]})
    return out, ""
