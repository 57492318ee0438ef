"""The mobile bundle format and a pure-numpy reference reader with brute-force search.

A bundle is a zip an Android/iOS app can use without FAISS: `manifest.json`, `strategies.json`
(row i = vector i), `vectors.f16` (a 16-byte header, then float16 little-endian rows) and the ONNX
embedder with its tokenizer. `distill.lifecycle.mobile_bundle` writes it; this module only reads and
encodes, with numpy and the standard library (FORMAT.md inside each bundle is the spec).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PackError

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "HEADER",
    "VECTORS_MAGIC",
    "MobileBundle",
    "decode_vectors",
    "encode_vectors",
    "same_ranking",
    "top_k",
]

BUNDLE_FORMAT = "edge-agent-mobile"
BUNDLE_VERSION = 1
VECTORS_MAGIC = b"EAVF"
VECTORS_VERSION = 1
DTYPE_FLOAT16 = 1
# magic[4], version u16, dtype u16 (1 = IEEE float16), n u32 (rows), dim u32; little-endian.
HEADER = struct.Struct("<4sHHII")
MANIFEST_FILE = "manifest.json"
STRATEGIES_FILE = "strategies.json"
VECTORS_FILE = "vectors.f16"


def encode_vectors(vectors: np.ndarray) -> bytes:
    """Header plus rows as float16 little-endian, row-major."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise PackError(f"vectors must be a 2-D array, got shape {v.shape}")
    n, dim = v.shape
    return HEADER.pack(VECTORS_MAGIC, VECTORS_VERSION, DTYPE_FLOAT16, n, dim) + v.astype("<f2").tobytes()


def decode_vectors(data: bytes) -> np.ndarray:
    """The (n, dim) float16 array from `encode_vectors` output; PackError on any mismatch."""
    if len(data) < HEADER.size:
        raise PackError(f"{VECTORS_FILE} is shorter than its {HEADER.size}-byte header; re-export the bundle")
    magic, version, dtype, n, dim = HEADER.unpack_from(data)
    if magic != VECTORS_MAGIC:
        raise PackError(f"{VECTORS_FILE} starts with {magic!r}, not {VECTORS_MAGIC!r}; not an edge-agent vector file")
    if version != VECTORS_VERSION or dtype != DTYPE_FLOAT16:
        raise PackError(f"{VECTORS_FILE} version {version} dtype {dtype} is not supported (want version "
                        f"{VECTORS_VERSION}, dtype {DTYPE_FLOAT16}); re-export with this edge-agent")
    expected = HEADER.size + n * dim * 2
    if len(data) != expected:
        raise PackError(f"{VECTORS_FILE} has {len(data)} bytes but its header promises {expected}; "
                        "the file is truncated, re-export the bundle")
    return np.frombuffer(data, dtype="<f2", offset=HEADER.size).reshape(n, dim)


def top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner product (float32 accumulation), best first, ties broken by lower row."""
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != vectors.shape[1]:
        raise PackError(f"query has dim {q.shape[0]} but the bundle's vectors have dim {vectors.shape[1]}; "
                        "embed queries with the bundle's own embedder")
    scores = vectors.astype(np.float32) @ q
    k = min(k, scores.shape[0])
    order = np.lexsort((np.arange(scores.shape[0]), -scores))[:k]
    return scores[order], order.astype(np.int64)


def same_ranking(scores: np.ndarray, expected: np.ndarray, got: np.ndarray, tol: float = 1e-3) -> bool:
    """Whether two rankings agree, allowing swaps between rows whose exact scores are within `tol`.

    `scores` are the exact float32 scores of one query against every row; float16 rounding may
    reorder near-ties, which this accepts. Use it to check a port of the search against this one.
    """
    if len(expected) != len(got):
        return False
    return all(int(a) == int(b) or abs(float(scores[int(a)]) - float(scores[int(b)])) <= tol
               for a, b in zip(expected, got))


@dataclass
class MobileBundle:
    """A bundle read back: manifest, strategy rows and float16 vectors (row i = strategy i)."""

    manifest: dict[str, Any]
    strategies: list[dict[str, Any]]
    vectors: np.ndarray

    @classmethod
    def open(cls, path: Path | str) -> MobileBundle:
        """Read and check a bundle: format, version, file hashes and row counts."""
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                for needed in (MANIFEST_FILE, STRATEGIES_FILE, VECTORS_FILE):
                    if needed not in names:
                        raise PackError(f"bundle {path.name} lacks {needed}; re-export it with: "
                                        "edge-agent pack export --mobile OUT.zip")
                manifest = json.loads(zf.read(MANIFEST_FILE))
                if manifest.get("format") != BUNDLE_FORMAT or manifest.get("format_version") != BUNDLE_VERSION:
                    raise PackError(f"bundle {path.name}: format {manifest.get('format')!r} version "
                                    f"{manifest.get('format_version')!r} is not {BUNDLE_FORMAT!r} v{BUNDLE_VERSION}")
                for name, digest in sorted(manifest.get("files", {}).items()):
                    if name not in names or hashlib.sha256(zf.read(name)).hexdigest() != digest:
                        raise PackError(f"bundle {path.name}: {name} is missing or its sha256 does not match "
                                        "manifest.files; re-export the bundle")
                strategies = json.loads(zf.read(STRATEGIES_FILE))
                vectors = decode_vectors(zf.read(VECTORS_FILE))
        except (zipfile.BadZipFile, json.JSONDecodeError, OSError) as exc:
            raise PackError(f"bundle {path} cannot be read ({exc}); re-export it") from None
        if not isinstance(strategies, list) or len(strategies) != vectors.shape[0]:
            raise PackError(f"bundle {path.name}: {STRATEGIES_FILE} rows do not match the {vectors.shape[0]} "
                            "vectors; re-export the bundle")
        dim = manifest.get("embedder", {}).get("dim")
        if dim != vectors.shape[1]:
            raise PackError(f"bundle {path.name}: manifest.embedder.dim {dim} but vectors have dim "
                            f"{vectors.shape[1]}; re-export the bundle")
        return cls(manifest=manifest, strategies=strategies, vectors=vectors)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k(self.vectors, query, k)

    def hits(self, query: np.ndarray, k: int, threshold: float | None = None) -> list[tuple[float, dict[str, Any]]]:
        """(score, strategy row) pairs above the bundle's retrieval threshold (or `threshold`)."""
        limit = self.manifest.get("settings", {}).get("retrieval", {}).get("threshold", -1.0)
        limit = limit if threshold is None else threshold
        scores, rows = self.search(query, k)
        return [(float(s), self.strategies[int(r)]) for s, r in zip(scores, rows) if float(s) >= limit]
