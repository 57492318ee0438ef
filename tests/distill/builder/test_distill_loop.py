"""The build loop with scripted fakes: what prompts contain, the loop's decisions, outputs, resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.builder.improve import improve
from distill.builder.prompts import ROLE_LINES
from distill.builder.rundir import init_run, open_build
from distill.builder.scenarios import cut_scenarios
from distill.builder.student_runner import StudentRunner
from distill.config import ROLES, LoopSettings, RunSettings
from distill.roles.budget import Meter
from distill.roles.caller import Caller
from distill.testing import EchoStudent, fake_teacher_reply, role_of
from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.domain import load_domain
from edge_agent.embedder import HashEmbedder
from edge_agent.library import read_library
from edge_agent.pack import load_pack
from edge_agent.prompting import GUIDANCE_OPEN

REPO = Path(__file__).resolve().parents[3]
AIRLINE = REPO / "distill" / "domains" / "airline.toml"
TEACHER = {"base_url": "http://127.0.0.1:9/v1", "model": "fake-teacher"}

from tests.distill.support import finish_build


def _caller(fn: Callable[[Sequence[Mapping[str, str]]], str], **loop: Any) -> tuple[Caller, ScriptedChat]:
    fake = ScriptedChat(fn, name="fake")
    settings = RunSettings().with_overrides(teacher=TEACHER, loop=loop)
    eps = {r: settings.endpoint(r) for r in ROLES}
    return Caller(eps, dict.fromkeys(ROLES, fake), cache=None, meter=Meter(), run_id="t"), fake


def _scenario() -> Any:
    msgs = [{"role": "user", "content": "I bought a saver ticket yesterday and want a full refund."}]
    return cut_scenarios(msgs, (1,), stage=0, customer_id="c-1")[0]


def _scripted(scores: list[int], items: int = 3) -> Callable[[Sequence[Mapping[str, str]]], str]:
    queue = list(scores)

    def reply(messages: Sequence[Mapping[str, str]]) -> str:
        role = role_of(messages)
        if role == "judge":
            return json.dumps({"score": queue.pop(0), "reason": "r"})
        if role in ("writer", "merger"):
            n = 12 if role == "merger" else items
            return json.dumps({"items": [{"do": f"{role} step {i}", "avoid": "vagueness"} for i in range(n)],
                               "compact": f"Say sorry and offer the credit ({role})."})
        return fake_teacher_reply(messages)
    return reply


def _improve(fn: Callable[[Sequence[Mapping[str, str]]], str], **loop: Any) -> tuple[Any, ScriptedChat, EchoStudent]:
    caller, fake = _caller(fn, **loop)
    echo = EchoStudent()
    student = StudentRunner(echo, "You are an agent.", HashEmbedder())
    outcome = asyncio.run(improve(_scenario(), teacher_reply="GOOD-REPLY", student_reply="BAD-REPLY",
                                  domain=load_domain(AIRLINE), caller=caller, student=student,
                                  settings=LoopSettings(**loop)))
    return outcome, fake, echo


def test_improve_stops_when_the_score_drops_and_keeps_the_best() -> None:
    outcome, fake, echo = _improve(_scripted([3, 4, 2, 5]))
    assert [r.score for r in outcome.rounds] == [3, 4, 2]
    assert outcome.best == 1 and outcome.best_score == 4
    writer = [c for c in fake.calls if role_of(c) == "writer"]
    assert "GOOD-REPLY" in writer[0][-1]["content"] and "BAD-REPLY" in writer[0][-1]["content"]
    # round 2 compares against the student's new reply, not the first one
    assert echo.calls[0][-1]["content"] != writer[1][-1]["content"] and "BAD-REPLY" not in writer[1][-1]["content"]
    merger = [c for c in fake.calls if role_of(c) == "merger"]
    assert len(merger) == 2 and "writer step 0" in merger[0][-1]["content"]
    assert all(len(r.items) <= 10 for r in outcome.rounds)  # merger answered 12 items
    # the student answered each round with the compact strategy injected, as on the device
    assert all(GUIDANCE_OPEN in c[-1]["content"] and "Say sorry and offer the credit" in c[-1]["content"]
               for c in echo.calls)
    judge = [c for c in fake.calls if role_of(c) == "judge"]
    assert "GOOD-REPLY" in judge[0][-1]["content"] and echo.calls and len(judge) == 3


def test_improve_stops_at_round_cap_and_at_five() -> None:
    outcome, _, _ = _improve(_scripted([2, 3]), rounds=2)
    assert len(outcome.rounds) == 2 and outcome.best == 1
    outcome, _, _ = _improve(_scripted([5, 1]))
    assert len(outcome.rounds) == 1


def test_malformed_judge_is_retried_then_the_scenario_fails_with_reason() -> None:
    def bad_judge(messages: Sequence[Mapping[str, str]]) -> str:
        return "I think it is quite good" if role_of(messages) == "judge" else _scripted([])(messages)

    outcome, fake, _ = _improve(bad_judge, json_retries=2)
    assert outcome.status == "failed" and "judge" in outcome.reason and "Judgement" in outcome.reason
    judge = [c for c in fake.calls if role_of(c) == "judge"]
    assert len(judge) == 3 and "could not be used" in judge[1][-1]["content"]


def _run(tmp: Path, name: str, fn: Callable[[Sequence[Mapping[str, str]]], str] = fake_teacher_reply,
         budget: Mapping[str, Any] | None = None, **loop: Any) -> tuple[dict[str, Any], ScriptedChat]:
    run_dir = tmp / name
    if not (run_dir / "config.json").exists():
        init_run(run_dir, AIRLINE, teacher=TEACHER, loop={"personas": 2, "stages": (1.0, 0.5), **loop},
                 student="echo", embedder="hash", cache=tmp / f"{name}.sqlite", run_id=name)
    fake = ScriptedChat(fn, name="fake")
    b = open_build(run_dir, backends=dict.fromkeys(ROLES, fake), student=EchoStudent(),
                   embedder=HashEmbedder(), budget=budget)
    return finish_build(b), fake


def _comparable(path: Path) -> list[dict[str, Any]]:
    out = []
    for s in read_library(path):
        data = s.to_json()
        data["provenance"] = {k: v for k, v in data["provenance"].items() if k not in ("timestamps", "run_id")}
        out.append(data)
    return out


def test_build_outputs_library_report_and_a_pack_the_device_loads(tmp_path: Path) -> None:
    report, fake = _run(tmp_path, "a")
    assert report["status"] == "finished" and report["strategies"] > 0
    lib = read_library(tmp_path / "a" / "library" / "library.jsonl")
    for s in lib:
        assert s.source == "distilled" and s.exemplar and s.strategy
        # content checks reject low scorers (the fake judge gives some 1s); the rest await review
        assert s.status == "pending" or (s.status == "rejected" and s.provenance["rejected"])
        assert 0 < len(s.compact.split()) <= 45 and "*" not in s.compact
        for key in ("run_id", "stage", "scenario_id", "teacher_model", "student_model", "scores", "timestamps"):
            assert key in s.provenance, key
    stage0 = report["stages"][0]
    assert stage0["teacher_turn_share"] == 1.0 and stage0["generated"]
    assert all(g["why"] and g["aimed_at"] for g in stage0["generated"])
    customers = [c for c in fake.calls if role_of(c) == "customer"]
    assert any("unusual" in c[0]["content"] for c in customers)  # generated situations joined stage 1
    assert 0.0 < report["stages"][1]["teacher_turn_share"] < 1.0
    assert report["usage"]["total"]["calls"] > 0
    pack = load_pack(tmp_path / "a" / "pack")
    agent = Agent.from_pack(pack, student=EchoStudent())
    reply = agent.reply([{"role": "user", "content": "Hi, I booked a flight yesterday and want my money back."}])
    assert reply.text and reply.hits  # the distilled library is retrieved on the device


def test_budget_stop_then_resume_gives_the_same_library_without_repaying(tmp_path: Path) -> None:
    full, _ = _run(tmp_path, "full")
    paid_full = full["usage"]["total"]["calls"]
    first, _ = _run(tmp_path, "part", budget={"max_calls": 25})
    assert first["status"] == "stopped" and "call budget" in first["reason"]
    assert (tmp_path / "part" / "library" / "report.json").is_file()
    second, fake = _run(tmp_path, "part", budget={"max_calls": 100000})
    assert second["status"] == "finished"
    assert second["usage"]["total"]["calls"] == paid_full  # the ledger counts both processes
    assert _comparable(tmp_path / "part" / "library" / "library.jsonl") == \
        _comparable(tmp_path / "full" / "library" / "library.jsonl")
    third, fake = _run(tmp_path, "part")  # resuming a finished run pays nothing
    assert fake.calls == [] and third["strategies"] == second["strategies"]


def test_role_lines_are_distinct() -> None:
    assert len(set(ROLE_LINES.values())) == len(ROLE_LINES)


def test_policy_breaches_are_never_distilled_and_score_one() -> None:
    def teacher_promises(messages: Sequence[Mapping[str, str]]) -> str:
        return _scripted([4])(messages)
    caller, fake = _caller(teacher_promises)
    student = StudentRunner(EchoStudent(), "You are an agent.", HashEmbedder())
    domain = load_domain(AIRLINE)
    outcome = asyncio.run(improve(_scenario(), teacher_reply="Sure, I will give you a full refund today.",
                                  student_reply="x", domain=domain, caller=caller, student=student,
                                  settings=LoopSettings()))
    assert outcome.status == "failed" and "no-refund-promise" in outcome.reason and fake.calls == []

    class Promiser(EchoStudent):
        def chat(self, messages: Any, config: Any = None) -> Any:
            result = super().chat(messages, config)
            return result.__class__(text="OK, we will issue a full refund.", usage=result.usage)
    caller, fake = _caller(_scripted([4, 4]))
    outcome = asyncio.run(improve(_scenario(), teacher_reply="GOOD", student_reply="BAD", domain=domain,
                                  caller=caller, student=StudentRunner(Promiser(), "s", HashEmbedder()),
                                  settings=LoopSettings(rounds=2)))
    assert [r.score for r in outcome.rounds] == [1, 1] and "no-refund-promise" in outcome.rounds[0].reason
    assert not [c for c in fake.calls if role_of(c) == "judge"]
