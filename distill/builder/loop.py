"""The build loop: stages of rollouts, scenarios, strategy improvement, hygiene and generation.

Every finished unit (a rollout, a scenario's outcome, a stage's generated situations) is
journaled before it counts, and the library is always recomputed from the journal, so a resumed
run skips finished work and ends with the same library as an uninterrupted one. Within a stage
the student sees the library of the earlier stages only, which keeps results independent of the
order in which concurrent units finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import numpy as np

from edge_agent.errors import BackendError
from edge_agent.library import Strategy

from ..roles.budget import BudgetExceeded
from .generate import generate_situations
from .improve import improve
from .outputs import write_outputs
from .rollout import Rollout, agent_messages, run_rollout
from .rundir import Build
from .scenarios import Customer, Scenario, cut_scenarios, domain_situations, make_customers, sample_scenarios
from .state import State, library_from, replay

__all__ = ["run_build"]

log = logging.getLogger(__name__)
T = TypeVar("T")


async def _all(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _stage(b: Build, state: State, stage: int, p: float, library: list[Strategy],
                 vectors: dict[str, np.ndarray]) -> None:
    loop = b.settings.loop
    situations = domain_situations(b.domain, loop.intents) + state.generated.get(stage - 1, [])
    customers = make_customers(b.domain, situations, personas=loop.personas, seed=loop.seed,
                               limit=loop.max_customers)
    new_customers = [c.to_json() for c in customers if c.id not in state.customers]
    if new_customers:
        state.apply(b.journal.append("customers", stage=stage, customers=new_customers))
    b.student.set_library(library, np.stack([vectors[s.scenario] for s in library]) if library else None)
    b.emit("stage", stage=stage, p=p, customers=len(customers), library=len(library))

    # Without a per-stage cap every scenario is used, so each one starts as soon as its rollout
    # ends instead of waiting for the slowest conversation of the stage.
    streaming = loop.scenarios_per_stage is None
    started: dict[str, asyncio.Future[None]] = {}

    async def work(s: Scenario) -> None:
        if (stage, s.id) not in state.outcomes:
            teacher, student = await asyncio.gather(b.caller.text("teacher", agent_messages(b.domain, s.history)),
                                                    b.student.reply(s.history))
            outcome = await improve(s, teacher_reply=teacher.text, student_reply=student, domain=b.domain,
                                    caller=b.caller, student=b.student, settings=loop)
            state.apply(b.journal.append("scenario", outcome=outcome.to_json()))
        o = state.outcomes[(stage, s.id)][0]
        b.emit("scenario", stage=stage, status=o.status, score=o.best_score)

    def start(scenarios: Sequence[Scenario]) -> None:
        for sc in scenarios:
            if sc.id not in started:
                started[sc.id] = asyncio.ensure_future(work(sc))

    async def roll(c: Customer) -> Rollout:
        done = state.rollouts.get((stage, c.id))
        if done is None:
            done = await run_rollout(c, stage=stage, p=p, domain=b.domain, caller=b.caller, student=b.student,
                                     settings=loop)
            state.apply(b.journal.append("rollout", rollout=done.to_json()))
        b.emit("rollout", stage=stage, total=len(customers))
        if streaming:
            start(cut_scenarios(done.messages, loop.cut_turns, stage=stage, customer_id=done.customer_id))
        return done

    try:
        rollouts = await _all([roll(c) for c in customers])
        cuts = [s for r in rollouts
                for s in cut_scenarios(r.messages, loop.cut_turns, stage=stage, customer_id=r.customer_id)]
        scenarios = sample_scenarios(cuts, loop.scenarios_per_stage, loop.seed, stage)
        b.emit("scenarios", stage=stage, total=len(scenarios))
        start(scenarios)
        await _all(list(started.values()))
    except BaseException:
        for task in started.values():
            task.cancel()
        await asyncio.gather(*started.values(), return_exceptions=True)
        raise
    if stage not in state.stages_done:
        state.apply(b.journal.append("stage_done", stage=stage, scenarios=len(scenarios)))


async def run_build(b: Build) -> dict[str, Any]:
    """Run (or resume) every stage, then write the library, report and pack. Returns the report."""
    state = replay(b.journal.records())
    await b.caller.identify()
    b.journal.append("started", resumed=bool(state.rollouts or state.outcomes), run_id=b.run_id,
                     teachers={r: b.caller.teacher_label(r) for r in b.caller.endpoints})
    stages = b.settings.loop.stages
    vectors: dict[str, np.ndarray] = {}
    status, reason = "finished", ""
    try:
        for stage, p in enumerate(stages):
            library = library_from(b, state, range(stage), vectors).library
            await _stage(b, state, stage, p, library, vectors)
            last = stage == len(stages) - 1
            if not last and stage not in state.generated and b.settings.loop.generate_per_stage > 0:
                outcomes = [o for (k, _), (o, _) in sorted(state.outcomes.items()) if k == stage]
                made, error = await generate_situations(
                    b.domain, outcomes, stage=stage, n=b.settings.loop.generate_per_stage,
                    worst=b.settings.loop.worst_for_generation, caller=b.caller)
                state.apply(b.journal.append("generated", stage=stage, situations=made, error=error))
                b.emit("generated", stage=stage, count=len(made))
        if not state.finished:
            state.apply(b.journal.append("finished"))
    except BudgetExceeded as exc:
        status, reason = "stopped", str(exc)
    except BackendError as exc:
        status, reason = "stopped", str(exc)
    await b.caller.drain()
    if status == "stopped":
        b.journal.append("stopped", reason=reason)
        log.warning("run %s stopped: %s", b.run_id, reason)
    return write_outputs(b, state, status=status, reason=reason, vectors=vectors)
