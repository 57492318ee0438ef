"""Strategy improvement for one scenario: write, merge, re-answer, judge; repeat while it helps.

Round r: the writer compares the teacher's reply with the student's latest one and lists what to
do and avoid; from round 2 the merger folds the list into the previous one (at most `max_items`);
the student answers again with the strategy injected as on the device; the judge scores 1-5 how
close that reply is to the teacher's (a reply breaking a forbidden policy rule scores 1). Stop after
`rounds`, when the score drops, or at 5; the best round wins (the earlier one on ties). A teacher
reply that breaks the policy, or malformed output, ends the scenario as failed, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.domain import Domain
from edge_agent.library import Strategy

from ..config import LoopSettings
from ..metrics import policy_violations
from ..roles.caller import Caller, StructuredFailure
from ..roles.schemas import Judgement, StrategyDraft, StrategyItem, draft_schema
from .prompts import judge_messages, merger_messages, render_items, writer_messages
from .scenarios import Scenario
from .student_runner import StudentRunner

__all__ = ["Outcome", "Round", "best_round", "improve", "limit_items", "make_strategy", "should_continue"]

MAX_SCORE = 5


@dataclass(frozen=True)
class Round:
    items: tuple[StrategyItem, ...]
    compact: str
    reply: str
    score: int
    reason: str = ""
    requires: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"items": [i.model_dump() for i in self.items], "compact": self.compact, "reply": self.reply,
                "score": self.score, "reason": self.reason,
                **({"requires": list(self.requires)} if self.requires else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Round:
        return cls(items=tuple(StrategyItem.model_validate(i) for i in data["items"]), compact=data["compact"],
                   reply=data["reply"], score=int(data["score"]), reason=data.get("reason", ""),
                   requires=tuple(data.get("requires", ())))


@dataclass(frozen=True)
class Outcome:
    """What happened to one scenario: its rounds, the best one, or why it failed."""

    scenario: Scenario
    teacher_reply: str
    student_reply: str
    rounds: tuple[Round, ...] = field(default_factory=tuple)
    status: str = "ok"  # ok | failed
    reason: str = ""
    best: int = -1

    @property
    def best_score(self) -> int:
        return self.rounds[self.best].score if self.rounds and self.best >= 0 else 0

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.to_json(), "teacher_reply": self.teacher_reply,
                "student_reply": self.student_reply, "rounds": [r.to_json() for r in self.rounds],
                "status": self.status, "reason": self.reason, "best": self.best}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(scenario=Scenario.from_json(data["scenario"]), teacher_reply=data["teacher_reply"],
                   student_reply=data["student_reply"], rounds=tuple(Round.from_json(r) for r in data["rounds"]),
                   status=data["status"], reason=data.get("reason", ""), best=int(data["best"]))


def should_continue(scores: Sequence[int], rounds: int, stop_at_max: bool = True) -> bool:
    """Whether to run another round after these scores (stop at the cap, at 5, or on a drop)."""
    if len(scores) >= rounds:
        return False
    if not scores:
        return True
    if stop_at_max and scores[-1] >= MAX_SCORE:
        return False
    return not (len(scores) >= 2 and scores[-1] < scores[-2])


def best_round(scores: Sequence[int]) -> int:
    """Index of the highest score; the earliest wins ties (fewer rounds, less drift)."""
    if not scores:
        return -1
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def limit_items(items: Sequence[StrategyItem], max_items: int) -> tuple[StrategyItem, ...]:
    """Drop repeated items (same "do" text, ignoring case) and keep at most `max_items`."""
    seen: set[str] = set()
    out: list[StrategyItem] = []
    for item in items:
        key = " ".join(item.do.lower().split())
        if key in seen:
            continue
        seen.add(key)
        out.append(item)
    return tuple(out[:max_items])


def make_strategy(scenario: Scenario, items: Sequence[StrategyItem], compact: str, exemplar: str,
                  provenance: Mapping[str, Any] | None = None, tags: Sequence[str] = (),
                  requires: Sequence[str] = ()) -> Strategy:
    return Strategy(id=scenario.id, scenario=scenario.transcript, strategy=render_items(items), compact=compact,
                    exemplar=exemplar, source="distilled", status="pending", tags=tuple(tags),
                    provenance=dict(provenance or {}), requires=tuple(requires))


def reply_requires(domain: Domain, writer: Sequence[str], reply: str) -> tuple[str, ...]:
    """What a teacher reply assumes: the writer's list (declared facts only) plus every fact the reply
    itself claims, so a reused reply never asserts what the conversation has not established."""
    from edge_agent.facts import claimed_facts

    known = {f.id for f in domain.facts}
    listed = [r for r in writer if r.lstrip("!") in known]
    claimed = [str(c) for c in claimed_facts(reply, domain.facts)]
    return tuple(dict.fromkeys([*listed, *claimed]))


async def improve(scenario: Scenario, *, teacher_reply: str, student_reply: str, domain: Domain,
                  caller: Caller, student: StudentRunner, settings: LoopSettings) -> Outcome:
    history = list(scenario.history)
    broken = policy_violations(teacher_reply, domain.rules)
    if broken:  # never distil a reply that breaks the written policy
        return Outcome(scenario, teacher_reply, student_reply, status="failed",
                       reason=f"the teacher's reply breaks policy rule(s) {', '.join(broken)}; not distilled")
    rounds: list[Round] = []
    schema = draft_schema(settings.max_items)
    previous: tuple[StrategyItem, ...] = ()
    bad = student_reply
    failure = ""
    while should_continue([r.score for r in rounds], settings.rounds, settings.stop_at_max_score):
        try:
            draft = await caller.structured(
                "writer", writer_messages(domain, history, teacher_reply, bad, settings.max_items), StrategyDraft,
                schema)
            requires = reply_requires(domain, draft.requires, teacher_reply)
            if previous:
                draft = await caller.structured(
                    "merger", merger_messages(previous, draft.items, settings.max_items, history), StrategyDraft,
                    schema)
            items = limit_items(draft.items, settings.max_items)
            candidate = make_strategy(scenario, items, draft.compact, teacher_reply)
            reply = await student.reply_with(history, candidate)
            broken = policy_violations(reply, domain.rules)
            if broken:  # a policy breach scores 1 whatever its resemblance; no judge call needed
                verdict = Judgement(score=1, reason=f"breaks policy rule(s) {', '.join(broken)}")
            else:
                verdict = await caller.structured("judge", judge_messages(history, teacher_reply, reply), Judgement)
        except StructuredFailure as exc:
            failure = str(exc)
            break
        rounds.append(Round(items=items, compact=draft.compact, reply=reply, score=verdict.score,
                            reason=verdict.reason, requires=requires))
        previous, bad = items, reply
    scores = [r.score for r in rounds]
    if not rounds:
        return Outcome(scenario, teacher_reply, student_reply, status="failed", reason=failure)
    return Outcome(scenario, teacher_reply, student_reply, rounds=tuple(rounds), status="ok",
                   reason=f"stopped early: {failure}" if failure else "", best=best_round(scores))


def outcome_strategy(outcome: Outcome, provenance: Mapping[str, Any]) -> Strategy:
    """The library entry for a successful outcome: its best round, with full provenance."""
    best = outcome.rounds[outcome.best]
    prov = {**dict(provenance), "stage": outcome.scenario.stage, "scenario_id": outcome.scenario.id,
            "customer_id": outcome.scenario.customer_id, "turn": outcome.scenario.turn,
            "scores": [r.score for r in outcome.rounds], "best_round": outcome.best + 1,
            "best_score": best.score, "judge_reason": best.reason, "student_reply_before": outcome.student_reply}
    if best.requires:
        prov["requires_from"] = "writer + the reply's own claims"
    return make_strategy(outcome.scenario, best.items, best.compact, outcome.teacher_reply, prov,
                         tags=(f"stage-{outcome.scenario.stage}",), requires=best.requires)
