"""Fault injection through the real openai client against a loopback teacher on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill.builder.rundir import init_run, open_build
from distill.config import RunSettings
from distill.roles.openai_chat import ChatRequest, OpenAIChat
from distill.testing import EchoStudent, LoopbackTeacher
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import BackendError, ConfigError
from edge_agent.library import read_library

AIRLINE = Path(__file__).resolve().parents[3] / "distill" / "domains" / "airline.toml"

from tests.distill.support import finish_build


def _endpoint(url: str, **kw: Any) -> Any:
    return RunSettings().with_overrides(teacher={"base_url": url, "model": "fake", **kw}).endpoint("teacher")


def _ask(ep: Any) -> Any:
    chat = OpenAIChat(ep)
    try:
        return chat.send(ChatRequest(messages=[{"role": "user", "content": "hi"}], temperature=0, max_tokens=20))
    finally:
        chat.close()


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "drop"])
def test_transient_faults_are_retried_by_the_client(fault: str) -> None:
    with LoopbackTeacher(faults=lambda n, body: fault if n == 1 else None, timeout_sleep_s=4.0) as t:
        result = _ask(_endpoint(t.base_url, timeout_s=1.5, max_retries=3))
        # the first request failed; a retry answered (a loaded machine may need one more)
        assert result.text and 2 <= t.requests <= 3


def test_persistent_failure_names_the_fix_and_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-secret-123")
    with LoopbackTeacher(faults=lambda n, body: "500") as t:
        with pytest.raises(BackendError, match="HTTP 500 after 2 tries.*resume") as info:
            _ask(_endpoint(t.base_url, max_retries=1, api_key_env="TEST_TEACHER_KEY"))
    assert "sk-secret" not in str(info.value)
    with pytest.raises(ConfigError, match="MISSING_KEY_VAR"):
        OpenAIChat(_endpoint("http://127.0.0.1:9/v1", api_key_env="MISSING_KEY_VAR"))


def _build(tmp: Path, url: str, name: str = "run", **loop: Any) -> dict[str, Any]:
    run_dir = tmp / name
    if not (run_dir / "config.json").exists():
        init_run(run_dir, AIRLINE, teacher={"base_url": url, "model": "fake", "max_retries": 1, "timeout_s": 10.0},
                 loop={"personas": 1, "stages": (1.0,), "rounds": 2, "concurrency": 2, **loop}, student="echo",
                 embedder="hash", cache=tmp / f"{name}.sqlite", run_id=name)
    b = open_build(run_dir, student=EchoStudent(), embedder=HashEmbedder())
    return finish_build(b)


def _is_json_call(body: dict[str, Any]) -> bool:
    return bool(body.get("response_format"))


def test_malformed_and_truncated_json_is_repaired_or_recorded(tmp_path: Path) -> None:
    seen: dict[str, int] = {}

    def faults(n: int, body: dict[str, Any]) -> str | None:
        if not _is_json_call(body):
            return None
        k = "malformed" if n % 2 else "truncated"
        seen[k] = seen.get(k, 0) + 1
        return k if n % 3 else None  # two of three structured calls are broken
    with LoopbackTeacher(faults=faults) as t:
        report = _build(tmp_path, t.base_url, json_retries=4)
    assert seen.get("malformed") and seen.get("truncated")
    assert report["status"] == "finished" and report["stages"][0]["ok"] > 0
    with LoopbackTeacher(faults=lambda n, body: "malformed" if _is_json_call(body) else None) as t:
        report = _build(tmp_path, t.base_url, name="bad", json_retries=1)
    stage = report["stages"][0]
    assert report["status"] == "finished" and stage["ok"] == 0 and stage["failed"]
    assert all("writer gave no valid StrategyDraft after 2 tries" in f["reason"] for f in stage["failed"])


def test_outage_stops_cleanly_and_resume_finishes_without_loss(tmp_path: Path) -> None:
    down = {"on": False}

    def faults(n: int, body: dict[str, Any]) -> str | None:
        if n == 15:
            down["on"] = True
        return "500" if down["on"] else None
    with LoopbackTeacher(faults=faults) as t:
        report = _build(tmp_path, t.base_url)
        assert report["status"] == "stopped" and "HTTP 500" in report["reason"]
        paid_before = t.paid
        down["on"] = False
        t.faults = None
        report = _build(tmp_path, t.base_url)
        assert report["status"] == "finished" and t.repeated == 0 and t.paid > paid_before
    assert read_library(tmp_path / "run" / "library" / "library.jsonl")


def test_the_api_key_is_never_written_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-very-secret-0042")
    with LoopbackTeacher() as t:
        run_dir = tmp_path / "keyed"
        init_run(run_dir, AIRLINE, teacher={"base_url": t.base_url, "model": "fake", "api_key_env": "TEST_TEACHER_KEY"},
                 loop={"personas": 1, "stages": (1.0,), "rounds": 1}, student="echo", embedder="hash",
                 cache=tmp_path / "keyed.sqlite", run_id="keyed")
        report = _build(tmp_path, t.base_url, name="keyed")
        assert t.last_auth == "Bearer sk-very-secret-0042"  # the key was used ...
    assert report["status"] == "finished"
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert b"sk-very-secret" not in path.read_bytes(), path  # ... and stored nowhere
