"""Crash and resume: a build process SIGKILLed at several points, resumed each time.

The loopback teacher kills the client just before answering chosen requests, so the killed
request is never delivered; every delivered answer is counted by request body. The resumed run
must end with the same library as an uninterrupted one and no answer delivered twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from distill.testing import LoopbackTeacher

REPO = Path(__file__).resolve().parents[3]
AIRLINE = REPO / "distill" / "domains" / "airline.toml"


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent.cli", "distill", *args]


def _run_args(url: str, out: Path, cache: Path) -> list[str]:
    return ["run", "--domain", str(AIRLINE), "--out", str(out), "--teacher-url", url, "--teacher-model", "fake",
            "--student", "echo", "--embedder", "hash", "--cache", str(cache), "--personas", "2",
            "--stages", "1.0,0.5", "--rounds", "2", "--concurrency", "1", "--no-progress", "--json"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "EDGE_AGENT_HOME": str(home), "PYTHONPATH": str(REPO)}


def _library(run_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for line in (run_dir / "library" / "library.jsonl").read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        data["provenance"] = {k: v for k, v in data["provenance"].items() if k not in ("timestamps", "run_id")}
        rows.append(data)
    return rows


def test_sigkill_at_several_points_then_resume_matches_and_repays_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with LoopbackTeacher() as t:
        done = subprocess.run(_cmd(*_run_args(t.base_url, tmp_path / "base", tmp_path / "base.sqlite")),
                              env=_env(home), capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        total = t.paid
    assert total > 60

    kill_at = {8, 35, total - 20}
    child: dict[str, subprocess.Popen[str]] = {}

    def before_reply(n: int) -> bool:
        if n in kill_at:
            os.kill(child["p"].pid, signal.SIGKILL)
            return True
        return False

    run_dir = tmp_path / "crashy"
    kills = 0
    with LoopbackTeacher(before_reply=before_reply) as t:
        args = _run_args(t.base_url, run_dir, tmp_path / "crashy.sqlite")
        for _ in range(6):
            child["p"] = subprocess.Popen(_cmd(*args), env=_env(home), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
            out, err = child["p"].communicate(timeout=240)
            if child["p"].returncode == -signal.SIGKILL:
                kills += 1
                args = ["resume", str(run_dir), "--no-progress", "--json"]
                continue
            assert child["p"].returncode == 0, err[-2000:]
            break
        assert kills == 3
        assert t.repeated == 0, "a delivered (paid) answer was requested again after a crash"
        assert t.paid == total
    report = json.loads(out)
    assert report["status"] == "finished"
    assert report["usage"]["total"]["calls"] == total
    assert _library(run_dir) == _library(tmp_path / "base")
    journal = (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    assert sum('"event": "started"' in line for line in journal) == 4
