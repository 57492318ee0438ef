"""Write a pack: embed the strategies, index them and write the files and manifest atomically."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import __version__
from ..embedder import EMBEDDER_CONFIG, Embedder, HashEmbedder
from ..errors import ConfigError
from ..files import sha256_file, write_json_atomic
from ..index import build_faiss
from ..library import Strategy
from ..outdir import check_destination, install_dir
from .layout import (
    EMBEDDER_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX,
    MANIFEST,
    STRATEGIES,
    TURN_VECTORS,
    VECTORS,
    check_file,
    check_unique_ids,
    embed_turn_texts,
    fail,
    index_text,
    inside,
    read_manifest,
    read_vectors,
    turn_texts,
)
from .manifest import PackSettings
from .read import Pack


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_pack(
    path: Path | str,
    strategies: Sequence[Strategy],
    vectors: np.ndarray,
    *,
    embedder_info: Mapping[str, Any],
    embedder_dir: Path | None = None,
    domain: Mapping[str, Any] | None = None,
    settings: PackSettings | None = None,
    build: Mapping[str, Any] | None = None,
    index_kind: str = "auto",
    force: bool = False,
    turn_vectors: np.ndarray | None = None,
    data_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write a complete pack atomically (a temporary sibling directory renamed into place).

    The destination must be absent, empty or a pack (see `edge_agent.outdir`); `force` also allows
    a non-empty directory. Nothing in it that is not one of the pack's own files is removed.

    Output is a pure function of the inputs (no timestamps unless `build` carries them), so
    identical inputs give byte-identical packs.
    """
    root = Path(path)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not strategies:
        raise fail("cannot build a pack from an empty library; add at least one strategy")
    if vectors.shape[0] != len(strategies):
        raise fail(f"{vectors.shape[0]} vectors for {len(strategies)} strategies; embed every strategy")
    check_unique_ids([s.id for s in strategies], "the library")
    root = check_destination(root, force=force)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp"))
    try:
        with (tmp / STRATEGIES).open("w", encoding="utf-8") as fh:
            for item in strategies:
                fh.write(json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        np.save(tmp / VECTORS, vectors, allow_pickle=False)
        faiss_index = build_faiss(vectors, kind=index_kind)
        faiss_index.save(tmp / INDEX)
        rels = [STRATEGIES, VECTORS, INDEX]
        if turn_vectors is not None:
            turn = np.ascontiguousarray(turn_vectors, dtype=np.float32)
            if turn.shape != (len(strategies), 2, vectors.shape[1]):
                raise fail(f"turn vectors have shape {turn.shape}, expected ({len(strategies)}, 2, {vectors.shape[1]})")
            np.save(tmp / TURN_VECTORS, turn, allow_pickle=False)
            rels.append(TURN_VECTORS)
        for rel, src in sorted((data_files or {}).items()):  # the domain's fact-source data
            target = inside(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            rels.append(rel)
        if embedder_dir is not None:
            shutil.copytree(embedder_dir, tmp / EMBEDDER_DIR)
            rels += sorted(
                f"{EMBEDDER_DIR}/{p.relative_to(tmp / EMBEDDER_DIR).as_posix()}"
                for p in (tmp / EMBEDDER_DIR).rglob("*") if p.is_file()
            )
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "embedder": {**dict(embedder_info), "dim": int(vectors.shape[1]), "normaliser": "l2"},
            "counts": {
                "strategies": len(strategies),
                "vectors": int(vectors.shape[0]),
                "approved": sum(s.status == "approved" for s in strategies),
            },
            "index": {"kind": type(faiss_index.raw).__name__, "metric": "inner_product"},
            "files": {rel: file_entry(tmp / rel) for rel in rels},
            "domain": dict(domain or {}),
            "settings": (settings or PackSettings()).to_json(),
            "build": {"edge_agent_version": __version__, **dict(build or {})},
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        install_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def select_for_pack(strategies: Sequence[Strategy], approved_only: bool) -> tuple[list[Strategy], int, int]:
    """(strategies to pack, rejected dropped, pending dropped): the one rule for every build, rejected
    never ship, pending ship unless `approved_only`."""
    rejected = sum(s.status == "rejected" for s in strategies)
    kept = [s for s in strategies if s.status != "rejected"]
    pending = sum(s.status == "pending" for s in kept) if approved_only else 0
    if approved_only:
        kept = [s for s in kept if s.status == "approved"]
    return kept, rejected, pending


@dataclass(frozen=True)
class BuildReport:
    path: Path
    strategies: int
    embedded: int  # rows sent to the embedder
    reused: int  # rows whose vector came from the previous pack


def build_pack(
    path: Path | str,
    strategies: Sequence[Strategy],
    embedder: Embedder,
    *,
    embedder_dir: Path | None = None,
    domain: Mapping[str, Any] | None = None,
    settings: PackSettings | None = None,
    build: Mapping[str, Any] | None = None,
    reuse: Pack | None = None,
    approved_only: bool = False,
    batch_size: int = 1,
    force: bool = False,
    data_files: Mapping[str, Path] | None = None,
) -> "BuildReport":
    """Embed the strategies' scenarios and write a pack; rejected ones never ship, pending ones ship
    unless `approved_only`.

    With `reuse`, rows whose index text and embedder are unchanged take their vector from that
    pack instead of being embedded again (incremental rebuild).
    Texts are embedded one at a time by default: the int8 ONNX embedder quantizes activations per
    batch, so a row's vector would depend on its batch mates (cosine ~0.99), and an incremental
    rebuild would differ from a full one and from how queries are embedded on the device.
    """
    items, _, _ = select_for_pack(strategies, approved_only)
    if not items:
        raise fail("no strategies to pack" + (" (none approved; review them or drop --approved-only)"
                                                 if approved_only else " (none left once rejected ones are "
                                                 "dropped); add or approve strategies in the library"))
    settings = settings or PackSettings()
    query_turns = settings.retrieval.query_turns
    texts = [index_text(s, query_turns) for s in items]
    cached: dict[str, np.ndarray] = {}
    turn_cache: dict[str, np.ndarray] = {}
    same_embedder = reuse is not None and reuse.embedder_info.get("id") == getattr(embedder, "id", None)
    if reuse is not None and same_embedder and reuse.settings.retrieval.query_turns == query_turns:
        for s, row in zip(reuse.strategies, reuse.vectors):
            cached[index_text(s, query_turns)] = row
    if reuse is not None and same_embedder and reuse.turn_vectors is not None:
        for s, pair in zip(reuse.strategies, reuse.turn_vectors):
            for text, vec in zip(turn_texts(s), pair):
                if text:
                    turn_cache[text] = vec
    vectors = np.zeros((len(items), embedder.dim), dtype=np.float32)
    todo = [i for i, t in enumerate(texts) if t not in cached]
    for i, t in enumerate(texts):
        if t in cached:
            vectors[i] = cached[t]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        vectors[chunk] = embedder.embed([texts[i] for i in chunk])
    info: dict[str, Any] = {"id": embedder.id, "kind": "hash" if isinstance(embedder, HashEmbedder) else "onnx"}
    if isinstance(embedder, HashEmbedder):
        info["seed"] = embedder.seed
    elif embedder_dir is not None:
        config = json.loads((Path(embedder_dir) / EMBEDDER_CONFIG).read_text(encoding="utf-8"))
        info.update({k: v for k, v in config.items() if k not in ("id", "dim")})
    turn = embed_turn_texts(items, embedder, turn_cache)
    out = write_pack(path, items, vectors, embedder_info=info, embedder_dir=embedder_dir, domain=domain,
                     settings=settings, build=build, index_kind="flat" if len(items) < 20_000 else "auto",
                     force=force, turn_vectors=turn, data_files=data_files)
    return BuildReport(path=out, strategies=len(items), embedded=len(todo), reused=len(items) - len(todo))


def repair_index(path: Path | str) -> Path:
    """Rebuild `index.faiss` from `vectors.npy` (the source of truth) and update the manifest."""
    root = Path(path)
    manifest = read_manifest(root)
    files = manifest["files"]
    for rel in (STRATEGIES, VECTORS):
        if rel in files:
            check_file(root, rel, files[rel], verify_hashes=True)
    vectors = read_vectors(root, int(manifest["counts"].get("vectors", -1)), int(manifest["embedder"]["dim"]))
    index = build_faiss(vectors, kind="flat" if vectors.shape[0] < 20_000 else "auto")
    index.save(root / INDEX)
    files[INDEX] = file_entry(root / INDEX)
    manifest["index"] = {"kind": type(index.raw).__name__, "metric": "inner_product"}
    write_json_atomic(root / MANIFEST, manifest)
    return root


def update_settings(
    path: Path | str,
    *,
    retrieval: Mapping[str, Any] | None = None,
    prompting: Mapping[str, Any] | None = None,
    generation: Mapping[str, Any] | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Path:
    """Replace the given settings tables (and the tuning record) in a pack's manifest.

    Only manifest.json changes, so the hashes of the files it lists stay valid.
    """
    root = Path(path)
    manifest = read_manifest(root)
    settings = dict(manifest.get("settings", {}))
    for key, value in (("retrieval", retrieval), ("prompting", prompting), ("generation", generation)):
        if value is not None:
            settings[key] = dict(value)
    try:
        PackSettings.from_tables(settings)
    except ConfigError as exc:
        raise ConfigError(f"pack {root}: new settings: {exc}") from None
    manifest["settings"] = settings
    if tuning is not None:
        manifest["tuning"] = dict(tuning)
    write_json_atomic(root / MANIFEST, manifest)
    return root
