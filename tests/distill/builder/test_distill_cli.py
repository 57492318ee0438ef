"""`edge-agent distill` commands: estimate, run and resume through click, against a loopback teacher."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from distill.cli import distill_group
from distill.testing import LoopbackTeacher
from edge_agent.cli import cli

DOMAINS = Path(__file__).resolve().parents[3] / "distill" / "domains"


def test_estimate_prints_calls_tokens_and_cost_per_role() -> None:
    out = CliRunner().invoke(distill_group, ["estimate", "--domain", str(DOMAINS / "airline.toml"),
                                             "--teacher-model", "local", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    roles = {r["role"]: r for r in data["expected"]}
    assert set(roles) == {"teacher", "writer", "merger", "judge", "customer", "generator"}
    worst = {r["role"]: r for r in data["max"]}
    assert all(worst[k]["calls"] >= roles[k]["calls"] > 0 for k in roles)
    small = json.loads(CliRunner().invoke(distill_group, [
        "estimate", "--domain", str(DOMAINS / "airline.toml"), "--teacher-model", "local", "--json",
        "--personas", "2"]).output)
    assert small["expected"][0]["calls"] < data["expected"][0]["calls"]
    table = CliRunner().invoke(distill_group, ["estimate", "--domain", str(DOMAINS / "outdoor_store.toml"),
                                               "--teacher-model", "unpriced-model"])
    assert "total" in table.output and "no price for: unpriced-model" in table.output


def test_run_then_resume_from_the_top_level_cli(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with LoopbackTeacher() as t:
        args = ["distill", "run", "--domain", str(DOMAINS / "outdoor_store.toml"), "--out", str(run_dir),
                "--teacher-url", t.base_url, "--teacher-model", "fake", "--student", "echo", "--embedder", "hash",
                "--personas", "1", "--stages", "1.0", "--rounds", "2", "--max-calls", "20", "--no-progress"]
        first = CliRunner().invoke(cli, args)
        assert first.exit_code == 3 and "call budget reached" in first.output
        again = CliRunner().invoke(cli, args)
        assert again.exit_code != 0 and "distill resume" in again.output
        done = CliRunner().invoke(cli, ["distill", "resume", str(run_dir), "--max-calls", "10000", "--no-progress"])
        assert done.exit_code == 0, done.output
        assert "finished" in done.output and "pack:" in done.output and t.repeated == 0
    report = json.loads((run_dir / "library" / "report.json").read_text())
    assert report["status"] == "finished" and report["domain"] == "outdoor-store-returns"
    assert "config.json" in {p.name for p in run_dir.iterdir()}
    assert "sk-" not in (run_dir / "config.json").read_text()


def test_run_refuses_a_domain_with_a_typo(tmp_path: Path) -> None:
    bad = tmp_path / "d.toml"
    bad.write_text((DOMAINS / "airline.toml").read_text() + "\n[roles.teacher]\nbase_ulr = 'x'\n")
    out = CliRunner().invoke(cli, ["distill", "run", "--domain", str(bad), "--out", str(tmp_path / "r"),
                                   "--teacher-model", "m"])
    assert out.exit_code != 0 and "base_ulr" in out.output


def test_progress_display_handles_every_event() -> None:
    from types import SimpleNamespace

    from distill.builder.progress import Progress
    from distill.roles.budget import Meter

    build = SimpleNamespace(caller=SimpleNamespace(meter=Meter()), student=SimpleNamespace(calls=3))
    with Progress(enabled=True) as progress:
        progress.build = build
        progress("stage", {"stage": 0, "p": 1.0, "customers": 2, "library": 0})
        progress("rollout", {"stage": 0, "total": 2})
        progress("scenario", {"stage": 0, "status": "ok", "score": 4})
        progress("scenarios", {"stage": 0, "total": 3})
        progress("call", {"role": "teacher", "cached": False})
        assert "student 3" in progress._info()
        tasks = {t.description: t for t in progress.progress.tasks}
        assert tasks["stage 0 scenarios"].total == 3 and tasks["stage 0 scenarios"].completed == 1
