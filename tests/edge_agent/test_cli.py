"""CLI through click's CliRunner on hash-embedded packs and the mock student."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edge_agent.cli import cli


def test_chat_piped_json(hash_pack: Path) -> None:
    result = CliRunner().invoke(cli, ["chat", "--pack", str(hash_pack), "--model", "mock", "--json"],
                                input="my internet is down since yesterday\nI want a refund for this month\n")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.output.strip().splitlines()]
    assert len(lines) == 2
    assert lines[0]["strategies"][0]["id"] == "t-000"
    assert "guidance" in lines[0]["text"]
    assert lines[1]["customer"] == "I want a refund for this month"


def test_chat_explain(hash_pack: Path) -> None:
    result = CliRunner().invoke(cli, ["chat", "--pack", str(hash_pack), "--model", "mock", "--explain", "--set", "threshold=0.6"],
                                input="zebra quantum pancake\nthe router lights are blinking orange\n")
    assert result.exit_code == 0, result.output
    assert "[strategy t-002 score" in result.output
    assert "none injected" in result.output


def test_retrieve_and_inspect(hash_pack: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["retrieve", "cancel my contract now", "--pack", str(hash_pack), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["hits"][0]["id"] == "t-004"
    out = runner.invoke(cli, ["pack", "inspect", str(hash_pack)])
    assert out.exit_code == 0 and "strategies  8" in out.output
    out = runner.invoke(cli, ["pack", "verify", str(hash_pack)])
    assert out.exit_code == 0 and out.output.startswith("OK")


def test_errors_are_one_line(tmp_path: Path, hash_pack: Path) -> None:
    result = CliRunner().invoke(cli, ["pack", "verify", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "edge-agent pack build" in result.output
    (hash_pack / "vectors.npy").write_bytes(b"\x93NUMPY")
    result = CliRunner().invoke(cli, ["pack", "verify", str(hash_pack)])
    assert result.exit_code == 1 and "truncated" in result.output
    result = CliRunner().invoke(cli, ["pack", "verify", str(hash_pack), "--repair"])
    assert result.exit_code == 1  # vectors are the source of truth: repair cannot invent them


def test_bad_override(hash_pack: Path) -> None:
    result = CliRunner().invoke(cli, ["chat", "--pack", str(hash_pack), "--model", "mock", "--set", "topk=1"],
                                input="hi\n")
    assert result.exit_code == 1 and "retrieval settings: unknown key 'topk' (did you mean 'top_k'?); valid keys:" in result.output
