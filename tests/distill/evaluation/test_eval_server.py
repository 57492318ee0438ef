"""End to end: `edge-agent eval run` against a real llama.cpp OpenAI-compatible server on 127.0.0.1.

The SmolLM2 GGUF plays simulator, teacher and judge; the real student answers for base and pack.
Tiny on purpose: 2 personas, 2 customer turns, 24-token replies. Then replay and a cached rerun.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from distill.evaluation.cli import eval_group
from distill.evaluation.records import read_recording
from edge_agent.cli import demo_dir

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server_url(llama_server: str) -> str:
    return llama_server


def _run(args: list[str]) -> dict[str, Any]:
    out = CliRunner().invoke(eval_group, ["run", *args, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return json.loads(out.output[out.output.index("{"):])


def test_online_record_replay_and_cached_rerun(server_url: str, hash_pack: Path, tmp_path: Path) -> None:
    common = ["--domain", str(demo_dir() / "domain.toml"), "--pack", str(hash_pack), "-c", "base", "-c", "pack",
              "--student-max-tokens", "24", "--cache", str(tmp_path / "calls.sqlite")]
    online = [*common, "--teacher-url", server_url, "--teacher-model", "smollm2", "--json-mode", "grammar",
              "--personas", "2", "--turns", "2", "--max-tokens", "64", "--seed", "7",
              "--record", str(tmp_path / "rec.jsonl")]
    first = _run([*online, "--out", str(tmp_path / "a")])
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [c["condition"] for c in data["conversations"]].count("base") == 2
    assert len(data["references"]) == 2 and all(c["turns"] for c in data["conversations"])
    usage = data["meta"]["usage"]["roles"]
    assert usage["simulator"]["paid_calls"] > 0 and usage["judge"]["paid_calls"] > 0
    scores = [c["judge_score"] for c in data["conversations"]]
    assert all(s is None or 1 <= s <= 5 for s in scores) and any(s is not None for s in scores)
    assert all(t["similarity"] is not None for c in data["conversations"] for t in c["turns"])
    assert set(first["summary"]["conditions"]) == {"base", "pack"}
    assert "pack - base" in first["summary"]["differences"]
    assert (tmp_path / "a" / "report.html").stat().st_size > 10_000

    recording = read_recording(tmp_path / "rec.jsonl")
    recorded = recording.customer_turns()
    assert len(recorded) == 2

    # Offline replay: the same customer turns, no endpoint at all.
    _run([*common, "--replay", str(tmp_path / "rec.jsonl"), "--no-judge", "--out", str(tmp_path / "b")])
    replayed = json.loads((tmp_path / "b" / "results.json").read_text())
    for conv in replayed["conversations"]:
        key = f"{conv['case']['intent']}|" + "/".join(f"{k}={v}" for k, v in sorted(conv["case"]["persona"].items()))
        assert [t["customer"] for t in conv["turns"]] == recorded[f"{key}#{conv['case']['trial']}"]
    assert replayed["meta"]["usage"]["roles"] == {}

    # The same online command again: every remote call is served by the cache.
    _run([*online, "--out", str(tmp_path / "c")])
    again = json.loads((tmp_path / "c" / "results.json").read_text())
    assert all(r["paid_calls"] == 0 for r in again["meta"]["usage"]["roles"].values())
    assert [[t["customer"] for t in c["turns"]] for c in again["references"]] == \
        [[t["customer"] for t in c["turns"]] for c in data["references"]]
