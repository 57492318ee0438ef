"""Hostile input through the installed `edge-agent` entry point (issue 13 items 6, 7, 10-12, 14, 15, 19)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.cli_chat import chat_session, read_lines
from edge_agent.library import Strategy, write_library
from tests.conftest import REPO, make_strategies

ENTRY = Path(sys.executable).with_name("edge-agent")


def run(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """The installed entry point, as a script would call it; no traceback may reach stderr."""
    proc = subprocess.run([str(ENTRY), *args], check=False, input=stdin, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert "Traceback" not in proc.stderr.decode("utf-8", "replace"), proc.stderr.decode()
    return proc


# --- item 6: exit codes survive the entry point ---------------------------------------------------------
def test_library_lint_flags_exit_1(tmp_path: Path) -> None:
    lib = tmp_path / "lib.jsonl"
    write_library(lib, [Strategy(id="p-1", scenario="CUSTOMER: refund", strategy="Always promise a full refund.")])
    assert run("library", "lint", str(lib)).returncode == 1
    write_library(lib, make_strategies(2))
    assert run("library", "lint", str(lib)).returncode == 0


def test_library_diff_exit_code(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_library(a, make_strategies(2))
    write_library(b, make_strategies(3))
    assert run("library", "diff", str(a), str(b), "--exit-code").returncode == 1
    assert run("library", "diff", str(a), str(a), "--exit-code").returncode == 0


def test_models_verify_fail_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    proc = run("models", "verify", str(bad))
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_usage_errors_exit_2() -> None:
    assert run("chat", "--max-tokens", "0").returncode == 2


# --- items 11, 12: chat input and --set ----------------------------------------------------------------
def test_binary_stdin_is_answered(hash_pack: Path) -> None:
    proc = run("chat", "--pack", str(hash_pack), "--model", "mock", "--json",
               stdin=b"\xff\xfe\x00bin\x80ary\n\xed\xa0\x80 surrogate\nhello\n")
    assert proc.returncode == 0, proc.stderr
    customers = [json.loads(line)["customer"] for line in proc.stdout.decode().splitlines()]
    assert customers == ["\ufffd\ufffdbin\ufffdary", "\ufffd\ufffd\ufffd surrogate", "hello"]


@pytest.mark.parametrize("value", ["threshold=abc", "threshold=true", "top_k=1.5", "threshold=1e999", "noequals"])
def test_bad_set_values_are_one_line_errors(hash_pack: Path, value: str) -> None:
    proc = run("chat", "--pack", str(hash_pack), "--model", "mock", "--set", value, stdin=b"hi\n")
    err = proc.stderr.decode()
    assert proc.returncode in (1, 2) and ("must be" in err or "KEY=VALUE" in err), err


def test_read_lines_cleans_controls() -> None:
    import io

    assert list(read_lines(io.BytesIO(b"a\x00b\x1b[31m\n\n  \nc\r\n"))) == ["ab[31m", "c"]


# --- item 10: one over-long line is skipped, the session goes on -----------------------------------------
class TinyWindow(ScriptedChat):
    """A student with a 300-token window where every character is a token."""

    n_ctx = 300

    def tokenize_messages(self, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[str]]:
        return [0] * sum(len(m["content"]) + 4 for m in messages), []

    def count_tokens(self, text: str) -> int:
        return len(text)


def test_chat_skips_a_line_too_long_and_answers_the_next(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    student = TinyWindow(default="ok")
    agent = Agent(student, system_prompt="Be kind.")
    agent.generation = agent.generation.merged(max_tokens=50)
    lines = b"first\n" + b"x" * 200_000 + b"\n" + b"y" * 200 + b"\nlast\n"
    refused = chat_session(agent, as_json=True, explain=False, interactive=False, stdin=io.BytesIO(lines))
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert refused == 1
    assert [o.get("text") for o in out] == ["ok", None, "ok", "ok"]
    assert "--n-ctx" in out[1]["error"]
    assert out[3].get("trimmed")  # older turns were dropped to fit, like the server does
    assert all(sum(len(m["content"]) for m in call) < 300 for call in student.calls)


def test_chat_has_the_flag_its_errors_name() -> None:
    proc = run("chat", "--help")
    assert "--n-ctx" in proc.stdout.decode()


# --- item 7: pack verify loads what chat loads ----------------------------------------------------------
@pytest.mark.real
def test_pack_verify_fails_on_an_embedder_that_does_not_load(tmp_path: Path, onnx_embedder_dir: Path) -> None:
    from edge_agent.embedder import OnnxEmbedder
    from edge_agent.pack import build_pack
    from tests.edge_agent.pack.test_hardening_pack import _rehash

    out = build_pack(tmp_path / "pack", make_strategies(2), OnnxEmbedder(onnx_embedder_dir),
                     embedder_dir=onnx_embedder_dir).path
    assert run("pack", "verify", str(out)).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["added_by_a_newer_version"] = 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    proc = run("pack", "verify", str(out))
    assert proc.returncode == 0 and "added_by_a_newer_version" in proc.stderr.decode()
    assert run("pack", "verify", str(out), "--strict").returncode == 1
    (out / "embedder" / "model.onnx").write_bytes(os.urandom(4096))
    _rehash(out, "embedder/model.onnx")
    proc = run("pack", "verify", str(out))
    assert proc.returncode == 1 and "embedder does not load" in proc.stderr.decode()


@pytest.mark.real
def test_pack_build_refuses_a_users_directory(tmp_path: Path, onnx_embedder_dir: Path) -> None:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run("pack", "build", "--out", str(out), "--embedder", str(onnx_embedder_dir))
    assert proc.returncode == 1 and "--force" in proc.stderr.decode()
    assert (out / "keep.txt").read_text() == "mine"
    proc = run("pack", "build", "--out", str(out), "--embedder", str(onnx_embedder_dir), "--force")
    assert proc.returncode == 0 and (out / "keep.txt").read_text() == "mine"


@pytest.mark.real
def test_pack_build_reports_the_system_prompts_share(tmp_path: Path, onnx_embedder_dir: Path) -> None:
    import shutil

    demo = Path(shutil.copytree(REPO / "edge_agent" / "demo", tmp_path / "demo"))  # with its data files
    domain = demo / "big.toml"
    text = (demo / "domain.toml").read_text()
    domain.write_text(text.replace('[policy]\ntext = """', '[policy]\ntext = """' + "Be thorough. " * 400, 1))
    proc = run("pack", "build", "--out", str(tmp_path / "p"), "--embedder", str(onnx_embedder_dir),
               "--domain", str(domain), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)["system_prompt"]
    assert info["share"] > 0.25 and info["tokens"] > 512
    assert "of smollm2" in proc.stderr.decode() and "context window" in proc.stderr.decode()


# --- item 15: lint on binary and empty libraries --------------------------------------------------------
def test_lint_binary_and_empty_libraries(tmp_path: Path) -> None:
    binary = tmp_path / "lib.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    proc = run("library", "lint", str(binary))
    assert proc.returncode == 1 and "not UTF-8" in proc.stderr.decode()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = run("library", "lint", str(empty))
    assert proc.returncode == 1 and "no strategies" in proc.stderr.decode()


# --- item 19: edge_agent never imports distill -----------------------------------------------------------
def test_no_module_of_edge_agent_imports_distill() -> None:
    offenders = []
    for path in sorted((REPO / "edge_agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "distill"]
    assert offenders == []


# --- item 14: a corrupt run config on resume --------------------------------------------------------------
@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b"{\"settings\": 3}", b"[" * 100_000])
def test_resume_with_a_corrupt_config_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_bytes(content)
    (run_dir / "journal.jsonl").write_text("kept\n")
    proc = run("distill", "resume", str(run_dir))
    assert proc.returncode == 1 and "config.json" in proc.stderr.decode(), proc.stderr
    assert (run_dir / "journal.jsonl").read_text() == "kept\n"
