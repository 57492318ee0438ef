"""End to end: a tiny build against a real llama.cpp OpenAI-compatible server on 127.0.0.1.

The SmolLM2 GGUF is teacher, writer, judge and customer (schema-constrained JSON) and the real
student; 2 personas, 1 stage, 2 scenarios, 2 rounds. The resulting pack is then loaded by the
device runtime, which answers a turn.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli import distill_group
from edge_agent.agent import Agent
from edge_agent.library import read_library

pytestmark = pytest.mark.server
AIRLINE = Path(__file__).resolve().parents[3] / "distill" / "domains" / "airline.toml"
SMALL_ROLES = """
[roles.teacher]
max_tokens = 40
timeout_s = 300
max_retries = 1
[roles.writer]
max_tokens = 240
[roles.merger]
max_tokens = 240
[roles.judge]
max_tokens = 40
[roles.customer]
max_tokens = 32
"""




def test_tiny_build_with_a_real_server_gives_a_pack_the_device_answers_with(
        llama_server: str, onnx_embedder_dir: Path, tmp_path: Path) -> None:
    domain = tmp_path / "airline.toml"
    # two short items per strategy keep the constrained JSON well inside max_tokens
    text = AIRLINE.read_text(encoding="utf-8").replace("max_items = 10", "max_items = 2")
    domain.write_text(text + SMALL_ROLES, encoding="utf-8")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(distill_group, [
        "run", "--domain", str(domain), "--out", str(run_dir), "--teacher-url", llama_server,
        "--teacher-model", "smollm2", "--json-mode", "grammar", "--embedder", str(onnx_embedder_dir),
        "--personas", "2", "--stages", "1.0", "--scenarios", "2", "--rounds", "2", "--max-turns", "1",
        "--cut-turns", "1", "--student-max-tokens", "32", "--concurrency", "2", "--min-score", "1", "--json"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.output[result.output.index("{"):])
    stage = report["stages"][0]
    # two customers, cut after their first message: two scenarios (one if both opened alike)
    assert report["status"] == "finished" and stage["rollouts"] == 2 and 1 <= stage["scenarios"] <= 2
    assert report["usage"]["total"]["calls"] > 0, stage["failed"]
    # a 135M teacher often writes garbage: every entry is either kept or rejected with its reasons
    lib = read_library(run_dir / "library" / "library.jsonl")
    q = report["quality"]
    assert q["kept"] + q["rejected"] == len(lib) and q["kept"] + q["rejected"] + len(report["merges"]) == stage["ok"]
    assert all(s.provenance["rejected"] for s in lib if s.status == "rejected")
    for s in lib:
        assert s.strategy and s.exemplar and s.provenance["teacher_model"] == "smollm2"
        assert 1 <= len(s.provenance["scores"]) <= 2
    if not report["strategies"]:
        assert report["pack"] is None
        return
    agent = Agent.from_pack(run_dir / "pack", generation={"max_tokens": 24})
    reply = agent.reply([{"role": "user", "content": "I bought a saver ticket yesterday. Can I get a refund?"}])
    assert reply.text.strip()
    # the run's cache answers a second resume without any new teacher call
    again = CliRunner().invoke(distill_group, ["resume", str(run_dir), "--json"], catch_exceptions=False)
    assert json.loads(again.output[again.output.index("{"):])["usage"]["total"]["calls"] == \
        report["usage"]["total"]["calls"]
