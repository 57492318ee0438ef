"""The pack format on disk: file names, version, what is embedded per row, and the file checks.

A pack is a directory holding `manifest.json` (format, version, embedder, counts, the sha256 and
size of every file, domain, settings, build), `strategies.jsonl` (row i = vector i), `vectors.npy`
(float32, L2-normalised, the source of truth), `turn_vectors.npy`, `index.faiss` (a rebuildable
accelerator), `embedder/` (ONNX model + tokenizer) and `facts/` (a fact source's data). The checks
raise `PackError` with one line naming the failed file or field and the fix. Nothing is pickled.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import __version__
from ..conversation import parse_transcript, query_text, request_of
from ..embedder import Embedder
from ..errors import ConfigError, PackError
from ..files import is_lfs_pointer, sha256_file
from ..library import Strategy
from ..rendering import clean_exemplar
from .manifest import Manifest

FORMAT_NAME = "edge-agent-pack"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "manifest.json"
STRATEGIES = "strategies.jsonl"
VECTORS = "vectors.npy"
INDEX = "index.faiss"
# Per strategy: [its scenario's last customer message, its exemplar reply], embedded at build time so
# the turn planner can tell whether an entry answers the latest message without re-embedding.
TURN_VECTORS = "turn_vectors.npy"
EMBEDDER_DIR = "embedder"
REBUILD_HINT = "rebuild it with: edge-agent pack build"



def index_text(strategy: Strategy, query_turns: int) -> str:
    """The text embedded for a strategy: the recent end of its scenario, built like a query."""
    return query_text(parse_transcript(strategy.scenario), query_turns)


def turn_texts(strategy: Strategy) -> tuple[str, str]:
    """(the scenario's open customer request, the exemplar without its speaker label); "" if absent."""
    last = request_of(parse_transcript(strategy.scenario))
    return last.strip(), " ".join(clean_exemplar(strategy.exemplar).split())


def embed_turn_texts(strategies: Sequence[Strategy], embedder: Embedder,
                     reuse: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Turn vectors for every strategy (zeros where a text is empty); texts in `reuse` are not embedded."""
    out = np.zeros((len(strategies), 2, embedder.dim), dtype=np.float32)
    for i, s in enumerate(strategies):
        for j, text in enumerate(turn_texts(s)):
            if not text:
                continue
            if reuse is not None and text in reuse:
                out[i, j] = reuse[text]
            else:
                out[i, j] = embedder.embed([text])[0]
    return out


def fail(msg: str) -> PackError:
    return PackError(msg)


def check_unique_ids(ids: Sequence[str], where: str) -> None:
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise fail(f"strategy ids must be unique within a pack, but {where} repeats {', '.join(dupes[:5])}; "
                    "give each strategy its own id")


def inside(root: Path, rel: Any) -> Path:
    """`root / rel`, after refusing a manifest path that could leave the pack directory."""
    text = str(rel)
    parts = text.replace("\\", "/").split("/")
    if not isinstance(rel, str) or not text or Path(text).is_absolute() or text.startswith(("/", "\\")) \
            or ".." in parts or ":" in parts[0]:
        raise fail(f"pack {root}: manifest.files names {text!r}, a path outside the pack; every file must "
                    f"lie inside the pack directory; {REBUILD_HINT}")
    path = root / text
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        raise fail(f"pack {root}: manifest.files entry {text!r} resolves outside the pack (a symbolic link?); "
                    f"{REBUILD_HINT}") from None
    return path


def check_file(root: Path, rel: str, entry: Mapping[str, Any], verify_hashes: bool) -> None:
    path = inside(root, rel)
    if not isinstance(entry, Mapping):
        raise fail(f"pack {root}: manifest.files[{rel!r}] must be an object with sha256 and bytes; {REBUILD_HINT}")
    if not path.is_file():
        raise fail(f"pack {root}: file '{rel}' is missing; {REBUILD_HINT}")
    if is_lfs_pointer(path):
        raise fail(
            f"pack {root}: '{rel}' is a Git-LFS pointer, not the file; run 'git lfs pull' or {REBUILD_HINT}"
        )
    size = path.stat().st_size
    expected = entry.get("bytes")
    if isinstance(expected, int) and size != expected:
        what = "truncated" if size < expected else "larger than recorded"
        raise fail(f"pack {root}: '{rel}' is {what} ({size} of {expected} bytes); {REBUILD_HINT}")
    if verify_hashes and sha256_file(path) != entry.get("sha256"):
        raise fail(f"pack {root}: sha256 of '{rel}' does not match manifest.files; the file changed "
                    f"after the build; {REBUILD_HINT}")


def read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise fail(f"pack directory {root} not found; build one with: edge-agent pack build")
    path = root / MANIFEST
    if not path.is_file():
        raise fail(f"pack {root}: file '{MANIFEST}' is missing; {REBUILD_HINT}")
    if is_lfs_pointer(path):
        raise fail(f"pack {root}: '{MANIFEST}' is a Git-LFS pointer; run 'git lfs pull' or {REBUILD_HINT}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"pack {root}: '{MANIFEST}' is not valid JSON ({exc}); {REBUILD_HINT}") from None
    if not isinstance(manifest, dict):
        raise fail(f"pack {root}: '{MANIFEST}' must be a JSON object; {REBUILD_HINT}")
    if manifest.get("format") != FORMAT_NAME:
        raise fail(f"pack {root}: manifest.format is {manifest.get('format')!r}, expected "
                    f"{FORMAT_NAME!r}; this is not an edge-agent pack")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise fail(f"pack {root}: manifest.format_version {version!r} is not supported by edge-agent "
                    f"{__version__} (supports {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade "
                    "edge-agent or rebuild the pack with this version")
    for key in ("embedder", "counts", "files"):
        if not isinstance(manifest.get(key), dict):
            raise fail(f"pack {root}: manifest.{key} is missing or not an object; {REBUILD_HINT}")
    return manifest


def typed_manifest(root: Path, raw: Mapping[str, Any]) -> Manifest:
    """The manifest with its settings checked: a bad one fails here, not at chat time."""
    try:
        return Manifest(raw)
    except ConfigError as exc:
        raise fail(f"pack {root}: {exc}; fix it in {MANIFEST} or {REBUILD_HINT}") from None


def read_vectors(root: Path, expected_rows: int, dim: int) -> np.ndarray:
    try:
        vectors = np.load(root / VECTORS, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise fail(f"pack {root}: '{VECTORS}' cannot be read ({str(exc)[:100]}), it may be truncated; "
                    f"{REBUILD_HINT}") from None
    if vectors.dtype != np.float32 or vectors.ndim != 2:
        raise fail(f"pack {root}: '{VECTORS}' must be a 2-D float32 array, got {vectors.dtype} "
                    f"{vectors.shape}; {REBUILD_HINT}")
    if vectors.shape[1] != dim:
        raise fail(f"pack {root}: dim mismatch: vectors have dim {vectors.shape[1]} but manifest.embedder.dim "
                    f"is {dim}; {REBUILD_HINT}")
    if vectors.shape[0] != expected_rows:
        raise fail(f"pack {root}: count mismatch: {VECTORS} has {vectors.shape[0]} rows but "
                    f"{STRATEGIES} has {expected_rows} strategies; {REBUILD_HINT}")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.abs(norms - 1.0) < 1e-3):
        raise fail(f"pack {root}: '{VECTORS}' rows are not L2-normalised; {REBUILD_HINT}")
    return vectors

