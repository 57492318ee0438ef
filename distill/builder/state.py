"""What a run's journal says is finished (`State`, `replay`), and the library recomputed from it.

Both the loop (between stages) and the outputs (at the end) assemble the library here, from
journaled outcomes only, so a resumed run ends with the same library as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_agent.library import Strategy

from ..lifecycle.quality import problems, reject
from .hygiene import apply_merges, dedupe
from .improve import Outcome, outcome_strategy
from .rollout import Rollout
from .rundir import Build
from .scenarios import cut_scenarios
from .student_runner import embed_library

__all__ = ["Built", "State", "canonical_customers", "library_from", "replay"]


@dataclass
class State:
    """What the journal says is finished."""

    rollouts: dict[tuple[int, str], Rollout] = field(default_factory=dict)
    outcomes: dict[tuple[int, str], tuple[Outcome, float]] = field(default_factory=dict)
    generated: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    generation_errors: dict[int, str] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages_done: set[int] = field(default_factory=set)
    finished: bool = False

    def apply(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == "rollout":
            r = Rollout.from_json(record["rollout"])
            self.rollouts[(r.stage, r.customer_id)] = r
        elif event == "scenario":
            o = Outcome.from_json(record["outcome"])
            self.outcomes[(o.scenario.stage, o.scenario.id)] = (o, float(record["at"]))
        elif event == "customers":
            for c in record["customers"]:
                self.customers[c["id"]] = c
        elif event == "generated":
            self.generated[int(record["stage"])] = list(record["situations"])
            if record.get("error"):
                self.generation_errors[int(record["stage"])] = str(record["error"])
        elif event == "stage_done":
            self.stages_done.add(int(record["stage"]))
        elif event == "finished":
            self.finished = True


def replay(records: Iterable[dict[str, Any]]) -> State:
    state = State()
    for record in records:
        state.apply(record)
    return state


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _provenance(b: Build, state: State, outcome: Outcome, at: float) -> dict[str, Any]:
    customer = state.customers.get(outcome.scenario.customer_id, {})
    eps = b.caller.endpoints
    return {"run_id": b.run_id, "teacher_model": eps["teacher"].model, "writer_model": eps["writer"].model,
            "judge_model": eps["judge"].model, "student_model": b.student_model,
            "situation": {k: customer.get("situation", {}).get(k) for k in ("id", "source", "why")},
            "persona": customer.get("persona", {}), "timestamps": {"finished": _iso(at)}}


@dataclass
class Built:
    """The library after some stages, the merges made, and the entries the content checks rejected."""

    library: list[Strategy]
    merges: list[dict[str, Any]]
    rejected: list[Strategy]


def library_from(b: Build, state: State, stages: Sequence[int], vectors: dict[str, np.ndarray]) -> Built:
    """The library after these stages, from journaled outcomes only (deterministic), and the merges.

    Entries that fail the content checks (`distill.lifecycle.quality`) never join the library the student
    sees or absorb a near-duplicate; they are kept aside, marked rejected with the reasons.
    """
    library: list[Strategy] = []
    merges: list[dict[str, Any]] = []
    rejected: list[Strategy] = []
    qt = b.student.retrieval.query_turns
    for stage in stages:
        owner = canonical_customers(state, stage, b.settings.loop.cut_turns)
        new = []
        for (k, sid), (o, at) in sorted(state.outcomes.items()):
            if k == stage and o.status == "ok":
                o = replace(o, scenario=replace(o.scenario, customer_id=owner.get(sid, o.scenario.customer_id)))
                entry = outcome_strategy(o, _provenance(b, state, o, at))
                found = problems(entry, min_score=b.settings.loop.min_score)
                if found:
                    rejected.append(reject(entry, found))
                else:
                    new.append(entry)
        pool = library + new
        missing = [s for s in pool if s.scenario not in vectors]
        for s, v in zip(missing, embed_library(b.embedder, missing, qt)):
            vectors[s.scenario] = v
        if not pool:
            continue
        matrix = np.stack([vectors[s.scenario] for s in pool])
        keep, made = dedupe(pool, matrix, b.settings.loop.dedupe_threshold)
        library = apply_merges(pool, keep, made)
        merges += [{**m.to_json(), "stage": stage} for m in made]
    return Built(library, merges, rejected)


def canonical_customers(state: State, stage: int, cuts: Sequence[int]) -> dict[str, str]:
    """Scenario id -> the smallest customer id whose conversation produced it (order-independent)."""
    out: dict[str, str] = {}
    for (k, cid), r in sorted(state.rollouts.items()):
        if k == stage:
            for sc in cut_scenarios(r.messages, cuts, stage=stage, customer_id=cid):
                out.setdefault(sc.id, cid)
    return out
