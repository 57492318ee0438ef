"""Run an evaluation: conversations per condition (live or replayed), then judges, then statistics.

`run_online` has the simulator talk to the teacher (the reference conversations, recordable) and to
every condition; `run_replay` feeds a recording to every condition, offline. Both return an
`EvalResult`; a budget stop keeps whatever finished and says so in `stopped`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from edge_agent.backends import ChatBackend, GenerationConfig
from edge_agent.domain import Domain
from edge_agent.embedder import Embedder
from edge_agent.errors import BackendError, ConfigError
from edge_agent.pack import Pack

from ..roles.budget import BudgetExceeded
from .conditions import GLOBAL_GUIDELINE, ChatResponder, Condition, StudentLoader, build_responders
from .judges import ConversationJudge, TurnJudge, score_offline
from .records import Case, Conversation, Recording
from .simulation import replay, simulate
from .statistics import summarise

__all__ = ["EvalParts", "EvalResult", "EvalSettings", "Progress", "run_online", "run_replay"]

log = logging.getLogger(__name__)

# stage, done, total
Progress = Callable[[str, int, int], None]


@dataclass
class EvalParts:
    """The objects an evaluation uses; any may be a fake. Remote roles are plain ChatBackends."""

    domain: Domain
    pack: Pack | None = None
    simulator: ChatBackend | None = None
    teacher: ChatBackend | None = None
    judge: ChatBackend | None = None
    embedder: Embedder | None = None
    load_student: StudentLoader | None = None


@dataclass(frozen=True)
class EvalSettings:
    conditions: tuple[Condition, ...]
    max_turns: int = 3
    context: str = "reference"  # replay only: 'reference' or 'own' (see simulation.replay)
    baseline: str | None = None
    pass_level: int = 4
    seed: int = 0
    judge_conversations: bool = True
    judge_turns: bool = True
    guideline: str = GLOBAL_GUIDELINE
    student_generation: Mapping[str, Any] = field(default_factory=dict)
    simulator_generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(temperature=0.3,
                                                                                            max_tokens=120))
    teacher_generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_tokens=200))
    judge_generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_tokens=120))


@dataclass
class EvalResult:
    mode: str
    settings: EvalSettings
    references: list[Conversation]
    conversations: list[Conversation]
    meta: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""

    def summary(self, seed: int | None = None) -> dict[str, Any]:
        return summarise(self.conversations, baseline=self.settings.baseline, pass_level=self.settings.pass_level,
                         seed=self.settings.seed if seed is None else seed)

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "format": "edge-agent-eval-results", "version": 1, "mode": self.mode, "stopped": self.stopped,
            "settings": {"conditions": [c.to_json() for c in s.conditions], "max_turns": s.max_turns,
                         "context": s.context if self.mode == "replay" else "own", "baseline": s.baseline,
                         "pass_level": s.pass_level, "seed": s.seed, "guideline": s.guideline},
            "meta": self.meta, "summary": self.summary(),
            "references": [c.to_json() for c in self.references],
            "conversations": [c.to_json() for c in self.conversations],
        }


def _noop(stage: str, done: int, total: int) -> None:
    return None


def _system_prompt(parts: EvalParts) -> str:
    return parts.pack.system_prompt if parts.pack is not None and parts.pack.system_prompt else \
        parts.domain.system_prompt()


def _responders(parts: EvalParts, settings: EvalSettings) -> tuple[dict[str, Any], ChatResponder | None]:
    teacher = ChatResponder("teacher", parts.teacher, _system_prompt(parts), settings.teacher_generation) \
        if parts.teacher is not None else None
    responders = build_responders(
        settings.conditions, system_prompt=_system_prompt(parts), pack=parts.pack, teacher=parts.teacher,
        load_student=parts.load_student, guideline=settings.guideline, generation=settings.student_generation,
        domain_generation=parts.domain.settings.get("generation", {}),
        teacher_generation=settings.teacher_generation)
    return responders, teacher


def _as_condition(ref: Conversation, name: str) -> Conversation:
    turns = [replace(t, reference=None) for t in ref.turns]
    return Conversation(condition=name, case=ref.case, turns=turns)


Job = tuple[Case, Callable[[], Conversation]]


def _play(stage: str, progress: Progress, jobs: Sequence[Job], out: list[Conversation]) -> str:
    """Run conversation jobs in order; a budget stop ends the stage, a backend error marks one."""
    for i, (case, job) in enumerate(jobs):
        try:
            out.append(job())
        except BudgetExceeded as exc:
            return str(exc)
        except BackendError as exc:
            log.warning("%s: a conversation failed: %s", stage, exc)
            out.append(Conversation(condition=stage, case=case, error=str(exc)))
        progress(stage, i + 1, len(jobs))
    return ""


def _finish(result: EvalResult, parts: EvalParts, settings: EvalSettings, progress: Progress) -> EvalResult:
    score_offline(result.conversations, parts.embedder, parts.domain.rules)
    refs = {c.case.key: c for c in result.references}
    judges: dict[str, Any] = {}
    if parts.judge is not None and not result.stopped:
        conv_judge = ConversationJudge(parts.judge, parts.domain.policy, settings.judge_generation)
        turn_judge = TurnJudge(parts.judge, settings.judge_generation)
        todo = [c for c in result.conversations if not c.error]
        try:
            for i, conv in enumerate(todo):
                if settings.judge_conversations:
                    ref = refs.get(conv.case.key)
                    verdict = conv_judge.judge(conv, [ref] if ref is not None and ref is not conv else [])
                    if verdict is not None:
                        conv.judge_score, conv.judge_reason = int(verdict.score), verdict.reason
                if settings.judge_turns:
                    turn_judge.judge_conversation(conv)
                progress("judging", i + 1, len(todo))
        except BudgetExceeded as exc:
            result.stopped = str(exc)
        judges = {"conversation_failures": conv_judge.failures, "turn_failures": turn_judge.failures}
    result.meta["judges"] = judges
    return result


def run_online(cases: Sequence[Case], parts: EvalParts, settings: EvalSettings,
               progress: Progress = _noop) -> EvalResult:
    """Simulated customers talk live to the teacher (references) and to each condition."""
    if parts.simulator is None:
        raise ConfigError("online evaluation needs a customer simulator; pass --simulator-url "
                          "(or replay a recording with --replay FILE)")
    responders, teacher = _responders(parts, settings)
    sim, dom, turns = parts.simulator, parts.domain, settings.max_turns
    gen = settings.simulator_generation
    started = time.time()
    result = EvalResult(mode="online", settings=settings, references=[], conversations=[])
    if teacher is not None:
        result.stopped = _play("references", progress, [
            (c, partial(simulate, c, teacher, sim, dom, max_turns=turns, generation=gen)) for c in cases],
            result.references)
        result.references = [r for r in result.references if not r.error]
    refs = {c.case.key: c for c in result.references}
    for cond in settings.conditions:
        if result.stopped:
            break
        if cond.kind == "teacher":
            result.conversations += [_as_condition(refs[c.key], cond.name) for c in cases if c.key in refs]
            progress(cond.name, len(cases), len(cases))
            continue
        responder = responders[cond.name]
        ref_fn = teacher.reference if teacher is not None else None
        result.stopped = _play(cond.name, progress, [
            (c, partial(simulate, c, responder, sim, dom, max_turns=turns, generation=gen, reference=ref_fn))
            for c in cases], result.conversations)
    result.meta.update({"cases": len(cases), "conversations_s": round(time.time() - started, 2)})
    return _finish(result, parts, settings, progress)


def run_replay(recording: Recording, parts: EvalParts, settings: EvalSettings,
               progress: Progress = _noop) -> EvalResult:
    """Recorded customer turns against each condition; no simulator, no network unless judges are given."""
    responders, teacher = _responders(parts, settings)
    started = time.time()
    refs = recording.conversations
    result = EvalResult(mode="replay", settings=settings, references=list(refs), conversations=[],
                        meta={"recording": dict(recording.meta)})
    ref_fn = teacher.reference if teacher is not None and settings.context == "own" else None
    for cond in settings.conditions:
        if result.stopped:
            break
        if cond.kind == "teacher":
            result.conversations += [_as_condition(r, cond.name) for r in refs]
            progress(cond.name, len(refs), len(refs))
            continue
        responder = responders[cond.name]
        result.stopped = _play(cond.name, progress, [
            (r.case, partial(replay, r, responder, context=settings.context, reference=ref_fn)) for r in refs],
            result.conversations)
    result.meta.update({"cases": len(refs), "conversations_s": round(time.time() - started, 2)})
    return _finish(result, parts, settings, progress)
