"""`edge-agent eval run|report` over HTTP to a loopback OpenAI-compatible fake, with a scripted student.

Covers the wiring the server test covers with llama.cpp, in the fast tier: endpoints from flags,
the call cache (a rerun pays nothing), --record then --replay, budgets and one-line errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from distill.evaluation import conditions
from distill.evaluation.cli import eval_group
from distill.testing import LoopbackTeacher
from edge_agent.backends import ScriptedChat
from edge_agent.cli import cli as root_cli

GOOD = "I'm sorry. Could I have your full name and postcode to check the account?"


def _reply(messages: Sequence[Mapping[str, str]]) -> str:
    system = messages[0]["content"]
    if "grade customer-support" in system or "compare two candidate replies" in system:
        return json.dumps({"score": 4, "reason": "fake"})
    if "role-playing a customer" in system:
        return f"My internet is down, this is message {len(messages)}."
    return GOOD


@pytest.fixture
def scripted_students(monkeypatch: pytest.MonkeyPatch) -> None:
    def loader(runtime: Any = None) -> Any:
        return lambda model: (ScriptedChat(default=GOOD if model == "good" else "ok", name=str(model)), {})

    monkeypatch.setattr(conditions, "default_student_loader", loader)


def _invoke(args: list[str]) -> dict[str, Any]:
    out = CliRunner().invoke(eval_group, ["run", *args, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return json.loads(out.output[out.output.index("{"):])


def test_online_cached_rerun_and_replay(scripted_students: None, hash_pack: Path, tmp_path: Path) -> None:
    with LoopbackTeacher(reply=_reply) as server:
        args = ["--pack", str(hash_pack), "-c", "base@bad", "-c", "pack@good", "--teacher-url", server.base_url,
                "--personas", "3", "--turns", "2", "--cache", str(tmp_path / "c.sqlite"),
                "--record", str(tmp_path / "rec.jsonl")]
        first = _invoke([*args, "--out", str(tmp_path / "a")])
        paid = server.paid
        assert paid > 0 and server.repeated == 0
        assert first["summary"]["conditions"]["pack"]["judge"]["mean"] == 4
        _invoke([*args, "--out", str(tmp_path / "b")])
        assert server.paid == paid  # the rerun was served by the cache
    data = json.loads((tmp_path / "b" / "results.json").read_text())
    assert all(r["paid_calls"] == 0 for r in data["meta"]["usage"]["roles"].values())
    replay = _invoke(["--pack", str(hash_pack), "-c", "base@bad", "-c", "pack@good", "--replay",
                      str(tmp_path / "rec.jsonl"), "--out", str(tmp_path / "r")])
    diff = replay["summary"]["differences"]["pack - base"]["similarity"]
    assert diff["excludes_zero"] and diff["mean"] > 0
    recorded = [json.loads(x) for x in (tmp_path / "rec.jsonl").read_text().splitlines()[1:]]
    replayed = json.loads((tmp_path / "r" / "results.json").read_text())["conversations"]
    assert [[t["customer"] for t in c["turns"]] for c in replayed[:3]] == \
        [[t["customer"] for t in r["turns"]] for r in recorded]


def test_budget_stops_cleanly(scripted_students: None, tmp_path: Path) -> None:
    with LoopbackTeacher(reply=_reply) as server:
        out = _invoke(["-c", "base", "--teacher-url", server.base_url, "--personas", "4", "--budget-calls", "3",
                       "--no-cache", "--out", str(tmp_path / "o")])
    assert "call budget reached" in out["stopped"]
    assert server.paid == 3


def test_errors_are_one_line(tmp_path: Path) -> None:
    out = CliRunner().invoke(root_cli, ["eval", "run", "-c", "base", "--out", str(tmp_path)])
    assert out.exit_code != 0 and "online evaluation needs endpoints" in out.output
    out = CliRunner().invoke(root_cli, ["eval", "run", "-c", "nonsense", "--replay", "x.jsonl"])
    assert "unknown condition kind 'nonsense'" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(root_cli, ["eval", "report", str(tmp_path / "missing")])
    assert "results file" in out.output and out.exit_code != 0
