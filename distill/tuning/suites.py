"""Tuning by conversation suites: run the grounded planner with and without the student's own drafts
(and any other parameter sets) over `edge-agent test` suites, and keep what passes most turns.

Ties go to the setting that lets the student write less (cheaper on a CPU, and nothing unchecked
can slip through a gate that was never needed). Pure orchestration over `edge_agent.convtest`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.convtest import Suite, run_suite
from edge_agent.convtest.cli import make_context

__all__ = ["SuiteCandidate", "SuiteScore", "DEFAULT_SUITE_CANDIDATES", "tune_by_suites", "format_suite_table"]


@dataclass(frozen=True)
class SuiteCandidate:
    name: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class SuiteScore:
    candidate: SuiteCandidate
    turns: int
    passed: int
    generated: int  # drafts the student wrote that were shown
    drafts_refused: int  # drafts the gate refused (replaced by a safe reply)
    seconds: float

    @property
    def rate(self) -> float:
        return self.passed / self.turns if self.turns else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.candidate.name,
            "params": dict(self.candidate.params),
            "turns": self.turns,
            "passed": self.passed,
            "rate": round(self.rate, 4),
            "generated": self.generated,
            "drafts_refused": self.drafts_refused,
            "seconds": round(self.seconds, 1),
        }


DEFAULT_SUITE_CANDIDATES = (
    SuiteCandidate("library-only", {"generate": False}),
    SuiteCandidate("library+gated-student", {"generate": True}),
)


def tune_by_suites(
    make_agent: Callable[[Mapping[str, Any]], Any],
    suites: Sequence[Suite],
    candidates: Sequence[SuiteCandidate] = DEFAULT_SUITE_CANDIDATES,
) -> list[SuiteScore]:
    """Scores, best first (pass rate, then fewer student-written replies)."""
    scores = []
    for cand in candidates:
        agent = make_agent(cand.params)
        ctx = make_context(agent)
        results = [run_suite(s, agent, ctx) for s in suites]
        turns = [t for r in results for t in r.turns]
        scores.append(
            SuiteScore(
                cand,
                len(turns),
                sum(t.passed for t in turns),
                generated=sum(t.route == "generated" for t in turns),
                drafts_refused=sum("draft failed the gate" in t.reason for t in turns),
                seconds=sum(r.seconds for r in results),
            )
        )
    return sorted(scores, key=lambda s: (-s.rate, s.generated + s.drafts_refused))


def format_suite_table(scores: Sequence[SuiteScore]) -> str:
    head = (
        f"{'setting':<24} {'turns passed':>14} {'rate':>7} {'shown drafts':>13} {'refused drafts':>15} "
        f"{'time':>8}"
    )
    rows = [head, "-" * len(head)]
    for i, s in enumerate(scores):
        mark = "*" if i == 0 else " "
        rows.append(
            f"{s.candidate.name + mark:<24} {f'{s.passed}/{s.turns}':>14} {100 * s.rate:>6.1f}% "
            f"{s.generated:>13} {s.drafts_refused:>15} {s.seconds:>7.1f}s"
        )
    return "\n".join(rows)
