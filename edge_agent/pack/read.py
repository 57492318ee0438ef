"""Load a pack: every file and hash checked, the settings typed (`Pack`, `load_pack`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..embedder import EMBEDDER_CONFIG, Embedder, HashEmbedder, OnnxEmbedder
from ..errors import PackError
from ..index import FAISS_MIN_ROWS, ExactIndex, FaissIndex, VectorIndex, faiss_header
from ..library import Strategy, parse_strategy_line, text_lines
from ..policy import PolicyRule
from .layout import (
    EMBEDDER_DIR,
    INDEX,
    REBUILD_HINT,
    STRATEGIES,
    TURN_VECTORS,
    VECTORS,
    check_file,
    check_unique_ids,
    fail,
    read_manifest,
    read_vectors,
    typed_manifest,
)
from .manifest import Manifest, PackSettings


@dataclass
class Pack:
    """A loaded, validated pack."""

    path: Path
    manifest: Manifest
    strategies: list[Strategy]
    vectors: np.ndarray
    index: VectorIndex
    turn_vectors: np.ndarray | None = None  # (rows, 2, dim); None for packs built before it existed

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def system_prompt(self) -> str:
        return self.manifest.system_prompt

    @property
    def settings(self) -> PackSettings:
        return self.manifest.settings

    @property
    def rules(self) -> list[PolicyRule]:
        """The policy rules the pack was built with."""
        return self.manifest.rules

    @property
    def embedder_info(self) -> dict[str, Any]:
        return dict(self.manifest.embedder)

    def open_embedder(self, threads: int | None = None) -> Embedder:
        """The embedder this pack was built with (the only one whose queries match its vectors)."""
        info = self.embedder_info
        if info.get("kind") == "hash":
            return HashEmbedder(dim=int(info["dim"]), seed=int(info.get("seed", 0)), id=info["id"])
        return OnnxEmbedder(self.path / EMBEDDER_DIR, threads=threads)



def load_pack(
    path: Path | str,
    *,
    verify_hashes: bool = True,
    use_faiss: bool | None = None,
    expect_embedder: str | None = None,
) -> Pack:
    """Load and validate a pack; raise PackError naming the failed field and the fix.

    `use_faiss=None` searches with FAISS only for packs of FAISS_MIN_ROWS or more (exact numpy
    search is as fast below that); the index file is validated either way.
    """
    root = Path(path)
    manifest = typed_manifest(root, read_manifest(root))
    files: Mapping[str, Any] = manifest.files
    for rel in (STRATEGIES, VECTORS):
        if rel not in files:
            raise fail(f"pack {root}: manifest.files lacks '{rel}'; {REBUILD_HINT}")
    for rel, entry in sorted(files.items()):
        if rel == INDEX and use_faiss is False:
            continue
        check_file(root, rel, entry, verify_hashes)

    emb = manifest["embedder"]
    dim = emb.get("dim")
    if not isinstance(dim, int) or dim <= 0:
        raise fail(f"pack {root}: manifest.embedder.dim must be a positive integer; {REBUILD_HINT}")
    if expect_embedder is not None and emb.get("id") != expect_embedder:
        raise fail(f"pack {root}: embedder mismatch: pack was built with {emb.get('id')!r} (dim {dim}) but "
                    f"{expect_embedder!r} was asked for; rebuild with: edge-agent pack rebuild --embedder "
                    f"{expect_embedder}")
    if emb.get("kind", "onnx") == "onnx":
        config_path = root / EMBEDDER_DIR / EMBEDDER_CONFIG
        if not config_path.is_file():
            raise fail(f"pack {root}: file '{EMBEDDER_DIR}/{EMBEDDER_CONFIG}' is missing; {REBUILD_HINT}")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            bundled_dim = int(config.get("dim", -1))
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as exc:
            raise fail(f"pack {root}: '{EMBEDDER_DIR}/{EMBEDDER_CONFIG}' is not a valid embedder config "
                        f"({type(exc).__name__}: {str(exc)[:80]}); {REBUILD_HINT}") from None
        if config.get("id") != emb.get("id") or bundled_dim != dim:
            raise fail(f"pack {root}: embedder mismatch: manifest.embedder is {emb.get('id')!r} dim {dim} but "
                        f"the bundled embedder is {config.get('id')!r} dim {config.get('dim')}; {REBUILD_HINT}")

    strategies: list[Strategy] = []
    try:
        lines = text_lines(root / STRATEGIES, REBUILD_HINT)
    except PackError as exc:
        raise fail(f"pack {root}: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            strategies.append(parse_strategy_line(line, f"pack {root}: {STRATEGIES} line {lineno}"))
    check_unique_ids([s.id for s in strategies], f"pack {root}: {STRATEGIES}")
    if not strategies:
        raise fail(f"pack {root}: empty library: {STRATEGIES} has no strategies; add strategies and "
                    f"{REBUILD_HINT}")
    if manifest["counts"].get("strategies") != len(strategies):
        raise fail(f"pack {root}: count mismatch: manifest.counts.strategies is "
                    f"{manifest['counts'].get('strategies')} but {STRATEGIES} has {len(strategies)}; {REBUILD_HINT}")

    vectors = read_vectors(root, len(strategies), dim)
    index: VectorIndex = ExactIndex(vectors)
    if use_faiss is not False and INDEX in files:
        _, index_dim, ntotal = faiss_header(root / INDEX)
        if ntotal != vectors.shape[0] or index_dim != dim:
            raise fail(f"pack {root}: count mismatch: {INDEX} holds {ntotal} vectors of dim {index_dim} but "
                        f"{VECTORS} has {vectors.shape[0]} of dim {dim}; rebuild the index with: "
                        "edge-agent pack verify --repair")
        if use_faiss or vectors.shape[0] >= FAISS_MIN_ROWS:
            index = FaissIndex.load(root / INDEX)
    turn_vectors = None
    if TURN_VECTORS in files:
        try:
            turn_vectors = np.load(root / TURN_VECTORS, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise fail(f"pack {root}: {TURN_VECTORS} is not a readable .npy file ({exc}); {REBUILD_HINT}") from None
        if turn_vectors.shape != (len(strategies), 2, dim) or turn_vectors.dtype != np.float32:
            raise fail(f"pack {root}: {TURN_VECTORS} has shape {turn_vectors.shape} {turn_vectors.dtype}, expected "
                        f"({len(strategies)}, 2, {dim}) float32; {REBUILD_HINT}")
    return Pack(path=root, manifest=manifest, strategies=strategies, vectors=vectors, index=index,
                turn_vectors=turn_vectors)

