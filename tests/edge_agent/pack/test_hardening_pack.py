"""Hostile inputs to packs and model files (issue 13 items 1, 4, 5, 7, 13, 18): nothing a user had is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_agent import modelcheck
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import PackError
from edge_agent.files import sha256_file
from edge_agent.library import Strategy
from edge_agent.pack import build_pack, load_pack
from tests.conftest import make_strategies


def _rehash(pack: Path, rel: str) -> None:
    """Record a changed file's hash, as a hostile pack would."""
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["files"][rel] = {"sha256": sha256_file(pack / rel), "bytes": (pack / rel).stat().st_size}
    (pack / "manifest.json").write_text(json.dumps(manifest))


def _build(out: Path, **kw: object) -> Path:
    return build_pack(out, make_strategies(4), HashEmbedder(dim=16), **kw).path  # type: ignore[arg-type]


# --- item 1: --out never destroys what is not a pack ------------------------------------------------
def test_non_empty_directory_that_is_not_a_pack_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    with pytest.raises(PackError, match="not an edge-agent pack.*--force"):
        _build(out)
    assert (out / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary or backup left


def test_force_adds_the_pack_and_keeps_the_users_files(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "thesis.txt").write_text("years of work")
    (out / "notes" / "a.md").write_text("a")
    _build(out, force=True)
    assert (out / "thesis.txt").read_text() == "years of work" and (out / "notes" / "a.md").read_text() == "a"
    assert len(load_pack(out).strategies) == 4


def test_rebuilding_a_pack_keeps_files_the_user_added_to_it(tmp_path: Path) -> None:
    out = _build(tmp_path / "pack")
    (out / "README.txt").write_text("my notes on this pack")
    _build(out)
    assert (out / "README.txt").read_text() == "my notes on this pack"
    assert len(load_pack(out).strategies) == 4


def test_a_hidden_sibling_named_like_the_old_backup_survives(tmp_path: Path) -> None:
    out = _build(tmp_path / "pack")
    (tmp_path / ".pack.old").mkdir()
    (tmp_path / ".pack.old" / "keep").write_text("x")
    _build(out)
    assert (tmp_path / ".pack.old" / "keep").read_text() == "x"


def test_an_existing_file_is_refused_not_renamed(tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    target.write_bytes(b"%PDF")
    with pytest.raises(PackError, match="existing file"):
        _build(target)
    assert target.read_bytes() == b"%PDF" and not (tmp_path / ".report.pdf.old").exists()


def test_out_dot_is_an_error_or_a_pack_never_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    _build(Path("."))
    assert len(load_pack(empty).strategies) == 4
    (empty / "mine.txt").write_text("x")
    _build(Path("."))  # a pack now: rebuilt in place, the user's file kept
    assert (empty / "mine.txt").read_text() == "x"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "a").write_text("a")
    monkeypatch.chdir(busy)
    with pytest.raises(PackError, match="not an edge-agent pack"):
        _build(Path("."))


# --- item 5: manifest paths stay inside the pack ------------------------------------------------------
@pytest.mark.parametrize("rel", ["../../../etc/hostname", "/etc/hostname", "embedder/../../x", "..\\x", "C:/x"])
def test_manifest_paths_outside_the_pack_are_refused(tmp_path: Path, rel: str) -> None:
    out = _build(tmp_path / "pack")
    (tmp_path / "x").write_text("secret")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"][rel] = {"sha256": "0" * 64, "bytes": 6}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackError, match="outside the pack"):
        load_pack(out)


def test_a_symlink_out_of_the_pack_is_refused(tmp_path: Path) -> None:
    out = _build(tmp_path / "pack")
    (tmp_path / "secret").write_text("secret")
    (out / "link").symlink_to(tmp_path / "secret")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["link"] = {"sha256": "0" * 64, "bytes": 6}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackError, match="resolves outside the pack"):
        load_pack(out)


# --- items 7, 13: what chat loads, verify checks ------------------------------------------------------
def test_duplicate_ids_in_a_pack_are_an_error(tmp_path: Path) -> None:
    out = _build(tmp_path / "pack")
    lines = (out / "strategies.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    second = json.loads(lines[1])
    second["id"] = first["id"]
    lines[1] = json.dumps(second, sort_keys=True)
    (out / "strategies.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(PackError, match="repeats t-000"):
        load_pack(out, verify_hashes=False)


@pytest.mark.real
def test_invalid_embedder_json_is_a_pack_error(tmp_path: Path, onnx_embedder_dir: Path) -> None:
    from edge_agent.embedder import OnnxEmbedder

    out = build_pack(tmp_path / "pack", make_strategies(2), OnnxEmbedder(onnx_embedder_dir),
                     embedder_dir=onnx_embedder_dir).path
    (out / "embedder" / "embedder.json").write_text("{not json")
    _rehash(out, "embedder/embedder.json")
    with pytest.raises(PackError, match="embedder/embedder.json' is not a valid embedder config"):
        load_pack(out)


# --- item 18: one rule for every build ----------------------------------------------------------------
def test_rejected_strategies_never_ship_and_pending_ones_do(tmp_path: Path) -> None:
    items = make_strategies(3)
    items = [Strategy(**{**s.to_json(), "status": st}) for s, st in zip(items, ["approved", "pending", "rejected"])]
    report = build_pack(tmp_path / "p", items, HashEmbedder(dim=16))
    assert [s.status for s in load_pack(report.path).strategies] == ["approved", "pending"]
    only = build_pack(tmp_path / "q", items, HashEmbedder(dim=16), approved_only=True)
    assert [s.status for s in load_pack(only.path).strategies] == ["approved"]


# --- item 4: the hash cache cannot be fooled by restoring mtime ---------------------------------------
def test_in_place_edit_with_mtime_restored_forces_a_rehash(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    first = modelcheck.cached_sha256(path)
    st = path.stat()
    with path.open("r+b") as fh:  # same size, edited in place
        fh.seek(10)
        fh.write(b"EVIL")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `touch -r` does
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert modelcheck.cached_sha256(path) != first


def test_pack_rebuild_refuses_a_users_directory_unless_forced(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge_agent.cli import cli
    from edge_agent.library import write_library

    lib = tmp_path / "lib.jsonl"
    write_library(lib, make_strategies(3))
    out = tmp_path / "docs"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["pack", "rebuild", "--library", str(lib), "--embedder", "hash:16", "--out", str(out)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "--force" in refused.output
    forced = CliRunner().invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "keep.txt").read_text() == "mine" and len(load_pack(out).strategies) == 3
