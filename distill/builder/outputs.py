"""A run's outputs: `library/library.jsonl`, `library/report.json` and `pack/` (via `build_pack`).

Always written from the journal, after a finished run and after a clean stop alike, so whatever
was paid for is in the library. The report holds per-stage counts and scores, failures with their
reasons, generated situations, merges, what the content checks kept and rejected (and why),
where cached answers came from, and usage and cost per model.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent.files import write_json_atomic
from edge_agent.library import write_library
from edge_agent.pack.make import PackSource, make_pack

from ..lifecycle.quality import quality_summary
from .state import State, library_from

if TYPE_CHECKING:
    from .rundir import Build

__all__ = ["stage_summary", "write_outputs"]


def _mean(values: list[int]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def stage_summary(state: State, stage: int, p: float) -> dict[str, Any]:
    outcomes = [o for (k, _), (o, _) in sorted(state.outcomes.items()) if k == stage]
    ok = [o for o in outcomes if o.status == "ok"]
    rollouts = [r for (k, _), r in state.rollouts.items() if k == stage]
    drivers = [d for r in rollouts for d in r.drivers]
    return {
        "stage": stage, "p_teacher": p, "done": stage in state.stages_done,
        "rollouts": len(rollouts),
        "teacher_turn_share": round(drivers.count("teacher") / len(drivers), 3) if drivers else None,
        "scenarios": len(outcomes), "ok": len(ok),
        "failed": [{"scenario": o.scenario.id, "reason": o.reason} for o in outcomes if o.status == "failed"],
        "mean_first_score": _mean([o.rounds[0].score for o in ok]),
        "mean_best_score": _mean([o.best_score for o in ok]),
        "mean_rounds": _mean([len(o.rounds) for o in ok]),
        "generated": state.generated.get(stage, []),
        "generation_error": state.generation_errors.get(stage, ""),
    }


def write_outputs(b: Build, state: State, *, status: str, reason: str,
                  vectors: dict[str, np.ndarray]) -> dict[str, Any]:
    stages = b.settings.loop.stages
    built = library_from(b, state, range(len(stages)), vectors)
    library, merges = built.library, built.merges
    lib_dir = Path(b.run_dir) / "library"
    # Rejected entries stay in the file (status rejected, reasons in provenance) for the record;
    # they never reach the pack.
    write_library(lib_dir / "library.jsonl", [*library, *built.rejected])
    # The same path as `pack build` and `pack rebuild`, except that lint-flagged strategies are left out
    # of the pack with a warning instead of failing the run; the library keeps them all, for review.
    packed = make_pack(b.run_dir / "pack", library, b.embedder, PackSource.from_domain(b.domain),
                       embedder_dir=b.embedder_dir, on_flags="leave_out",
                       build={"run_id": b.run_id, "teacher": b.caller.endpoints["teacher"].model,
                              "student": b.student_model, "builder": "edge-agent distill"})
    flagged = packed.left_out
    pack_path = str(packed.report.path) if packed.report is not None else None
    meter = b.caller.meter
    summary = {
        "run_id": b.run_id, "status": status, "reason": reason,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "domain": b.domain.name, "strategies": len(library), "pack": pack_path, "lint_left_out": flagged,
        "roles": {r: {"model": e.model, "base_url": e.base_url, "teacher": b.caller.teacher_label(r)}
                  for r, e in b.caller.endpoints.items()},
        "student": b.student_model,
        "stages": [stage_summary(state, k, p) for k, p in enumerate(stages)],
        "merges": merges,
        "quality": quality_summary(library, built.rejected, min_score=b.settings.loop.min_score),
        "cache": b.caller.cache_report(),
        "usage": meter.to_json(),
        "student_calls": {"generated": b.student.calls, "cache_hits": b.student.cache_hits},
        "unpriced_models": sorted(m for m in meter.by_model if m not in b.settings.prices),
    }
    write_json_atomic(lib_dir / "report.json", summary)
    return summary
