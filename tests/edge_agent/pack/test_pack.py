"""Pack writing, loading and one test per corruption kind, each checking the one-line message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.embedder import HashEmbedder
from edge_agent.errors import PackError
from edge_agent.library import Strategy
from edge_agent.pack import build_pack, load_pack, repair_index, write_pack
from tests.conftest import copy_pack, make_strategies


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _save_manifest(path: Path, data: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(data))


def test_roundtrip(hash_pack: Path) -> None:
    pack = load_pack(hash_pack)
    assert len(pack.strategies) == 8
    assert pack.vectors.shape == (8, 32)
    assert pack.vectors.dtype == np.float32
    assert pack.index.ntotal == 8
    assert pack.system_prompt == "You help customers."
    m = pack.manifest
    assert m["format"] == "edge-agent-pack" and m["format_version"] == 1
    assert set(m["files"]) == {"strategies.jsonl", "vectors.npy", "index.faiss", "turn_vectors.npy"}
    assert pack.turn_vectors is not None and pack.turn_vectors.shape == (8, 2, 32)
    assert pack.settings.retrieval.threshold == 0.2 and pack.settings.tables["retrieval"] == {"threshold": 0.2, "top_k": 2}
    first = (hash_pack / "strategies.jsonl").read_text().splitlines()[0]
    assert json.loads(first)["id"] == pack.strategies[0].id


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build_pack(tmp_path / "a", make_strategies(5), HashEmbedder(dim=16)).path
    b = build_pack(tmp_path / "b", make_strategies(5), HashEmbedder(dim=16)).path
    assert _manifest(a)["files"] == _manifest(b)["files"]
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()


def test_incremental_build_reuses_vectors(tmp_path: Path) -> None:
    emb = HashEmbedder(dim=16)
    first = build_pack(tmp_path / "p", make_strategies(5), emb)
    old = load_pack(first.path)
    changed = make_strategies(5)
    changed[0] = changed[0].replace(scenario="CUSTOMER: a brand new situation")
    second = build_pack(tmp_path / "p2", changed, emb, reuse=old)
    assert (first.embedded, second.embedded, second.reused) == (5, 1, 4)


def test_approved_only(tmp_path: Path) -> None:
    items = make_strategies(4)
    items[1] = items[1].replace(status="rejected")
    items[2] = items[2].replace(status="pending")
    report = build_pack(tmp_path / "p", items, HashEmbedder(dim=16), approved_only=True)
    assert [s.id for s in load_pack(report.path).strategies] == ["t-000", "t-003"]


def test_repair_index(hash_pack: Path) -> None:
    (hash_pack / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(PackError):
        load_pack(hash_pack)
    repair_index(hash_pack)
    assert load_pack(hash_pack).index.ntotal == 8


def _corrupt_missing(p: Path) -> None:
    (p / "vectors.npy").unlink()


def _corrupt_hash(p: Path) -> None:
    lines = (p / "strategies.jsonl").read_text().splitlines()
    data = json.loads(lines[0])
    data["strategy"] = data["strategy"].upper()
    lines[0] = json.dumps(data, sort_keys=True)
    text = "\n".join(lines) + "\n"
    m = _manifest(p)
    m["files"]["strategies.jsonl"]["bytes"] = len(text.encode())
    (p / "strategies.jsonl").write_text(text)
    _save_manifest(p, m)


def _corrupt_lfs(p: Path) -> None:
    (p / "index.faiss").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")


def _corrupt_truncated_npy(p: Path) -> None:
    data = (p / "vectors.npy").read_bytes()
    (p / "vectors.npy").write_bytes(data[: len(data) // 2])


def _corrupt_bad_json_line(p: Path) -> None:
    from edge_agent.files import sha256_file

    with (p / "strategies.jsonl").open("a") as fh:
        fh.write("{not json\n")
    m = _manifest(p)
    m["files"]["strategies.jsonl"] = {"sha256": sha256_file(p / "strategies.jsonl"),
                                      "bytes": (p / "strategies.jsonl").stat().st_size}
    _save_manifest(p, m)


def _corrupt_version(p: Path) -> None:
    m = _manifest(p)
    m["format_version"] = 99
    _save_manifest(p, m)


def _corrupt_dim(p: Path) -> None:
    m = _manifest(p)
    m["embedder"]["dim"] = 64
    _save_manifest(p, m)


def _corrupt_count(p: Path) -> None:
    m = _manifest(p)
    m["counts"]["strategies"] = 3
    _save_manifest(p, m)


def _corrupt_index_count(p: Path) -> None:
    from edge_agent.files import sha256_file
    from edge_agent.index import build_faiss

    vecs = np.load(p / "vectors.npy")
    build_faiss(vecs[:5]).save(p / "index.faiss")
    m = _manifest(p)
    m["files"]["index.faiss"] = {"sha256": sha256_file(p / "index.faiss"), "bytes": (p / "index.faiss").stat().st_size}
    _save_manifest(p, m)


def _corrupt_manifest_json(p: Path) -> None:
    (p / "manifest.json").write_text("{")


def _corrupt_not_normalised(p: Path) -> None:
    from edge_agent.files import sha256_file

    vecs = np.load(p / "vectors.npy") * 2
    np.save(p / "vectors.npy", vecs.astype(np.float32))
    m = _manifest(p)
    m["files"]["vectors.npy"] = {"sha256": sha256_file(p / "vectors.npy"), "bytes": (p / "vectors.npy").stat().st_size}
    _save_manifest(p, m)


CORRUPTIONS = [
    (_corrupt_missing, "file 'vectors.npy' is missing"),
    (_corrupt_hash, "sha256 of 'strategies.jsonl' does not match"),
    (_corrupt_lfs, "'index.faiss' is a Git-LFS pointer"),
    (_corrupt_truncated_npy, "'vectors.npy' is truncated"),
    (_corrupt_bad_json_line, "strategies.jsonl line 9: not valid JSON"),
    (_corrupt_version, "format_version 99 is not supported"),
    (_corrupt_dim, "dim mismatch"),
    (_corrupt_count, "count mismatch: manifest.counts.strategies is 3"),
    (_corrupt_index_count, "index.faiss holds 5 vectors"),
    (_corrupt_manifest_json, "'manifest.json' is not valid JSON"),
    (_corrupt_not_normalised, "not L2-normalised"),
]


@pytest.mark.parametrize("corrupt,message", CORRUPTIONS, ids=[c[0].__name__ for c in CORRUPTIONS])
def test_corrupt_pack_messages(hash_pack: Path, tmp_path: Path, corrupt, message: str) -> None:
    pack = copy_pack(hash_pack, tmp_path / "copy")
    corrupt(pack)
    with pytest.raises(PackError) as err:
        load_pack(pack)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    assert any(fix in text for fix in ("rebuild", "upgrade", "git lfs", "fix", "edge-agent"))


def test_embedder_mismatch(hash_pack: Path) -> None:
    with pytest.raises(PackError, match="embedder mismatch.*rebuild with"):
        load_pack(hash_pack, expect_embedder="all-minilm-l6-v2")


def test_empty_library_refused(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="empty library"):
        write_pack(tmp_path / "p", [], np.zeros((0, 4), np.float32), embedder_info={"id": "x"})


def test_empty_strategies_file(hash_pack: Path, tmp_path: Path) -> None:
    from edge_agent.files import sha256_file

    pack = copy_pack(hash_pack, tmp_path / "copy")
    (pack / "strategies.jsonl").write_text("")
    m = _manifest(pack)
    m["files"]["strategies.jsonl"] = {"sha256": sha256_file(pack / "strategies.jsonl"), "bytes": 0}
    _save_manifest(pack, m)
    with pytest.raises(PackError, match="empty library"):
        load_pack(pack)


def test_missing_pack_dir(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="not found; build one with: edge-agent pack build"):
        load_pack(tmp_path / "nope")


def test_never_pickles(hash_pack: Path) -> None:
    # np.load with allow_pickle=False would raise on an object array; make sure we wrote none.
    assert np.load(hash_pack / "vectors.npy", allow_pickle=False).dtype == np.float32


def test_strategy_unknown_field_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown field"):
        Strategy.from_json({"id": "a", "scenario": "s", "strategy": "t", "bogus": 1})


def test_small_packs_search_exactly_and_big_ones_with_faiss(hash_pack: Path) -> None:
    from edge_agent.index import ExactIndex, FaissIndex

    assert isinstance(load_pack(hash_pack).index, ExactIndex)  # 8 rows: numpy, faiss not needed
    forced = load_pack(hash_pack, use_faiss=True).index
    assert isinstance(forced, FaissIndex) and forced.ntotal == 8
