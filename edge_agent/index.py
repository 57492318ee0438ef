"""Nearest-neighbour search over L2-normalised vectors: exact numpy search and FAISS.

Both return (scores, ids) with inner-product scores (cosine, as vectors are normalised), best
first, and the same ids for the same data (a contract test checks it). FAISS is an accelerator:
`vectors.npy` stays the source of truth and the index can always be rebuilt from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import PackError

__all__ = ["VectorIndex", "ExactIndex", "FaissIndex", "build_faiss", "faiss_header", "HNSW_MIN_ROWS",
           "FAISS_MIN_ROWS"]

# Below this many rows an exact flat index is fast enough; above it HNSW keeps search in ms.
HNSW_MIN_ROWS = 20_000
# Below this many rows exact numpy search is as fast as FAISS, so the device does not even import
# it (saves memory and start-up time on small packs); the file is still checked.
FAISS_MIN_ROWS = 4_096


def faiss_header(path: Path) -> tuple[str, int, int]:
    """(fourcc, dim, ntotal) from a FAISS index file's header, read without importing faiss."""
    with Path(path).open("rb") as fh:
        head = fh.read(16)
    if len(head) < 16:
        raise PackError(f"{Path(path).name} is too short to be a FAISS index; rebuild it with: "
                        "edge-agent pack verify --repair")
    return head[:4].decode("latin-1"), int.from_bytes(head[4:8], "little"), int.from_bytes(head[8:16], "little")


class VectorIndex(Protocol):
    ntotal: int

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ...


def _as_queries(query: np.ndarray) -> np.ndarray:
    q = np.asarray(query, dtype=np.float32)
    return q[None, :] if q.ndim == 1 else q


class ExactIndex:
    """Brute-force inner product with numpy; ties broken by lower id, like FAISS flat."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.ntotal = int(self.vectors.shape[0])

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_queries(query)
        k = min(k, self.ntotal)
        scores = q @ self.vectors.T
        # argsort on (-score, id) keeps ties deterministic.
        order = np.lexsort((np.broadcast_to(np.arange(self.ntotal), scores.shape), -scores), axis=1)[:, :k]
        return np.take_along_axis(scores, order, axis=1), order.astype(np.int64)


class FaissIndex:
    """A FAISS index (flat or HNSW, inner product) loaded from or built for a pack."""

    def __init__(self, index: object) -> None:
        self._index = index
        self.ntotal = int(index.ntotal)  # type: ignore[attr-defined]

    @property
    def raw(self) -> object:
        return self._index

    @classmethod
    def load(cls, path: Path) -> "FaissIndex":
        import faiss

        try:
            return cls(faiss.read_index(str(path)))
        except RuntimeError as exc:
            raise PackError(
                f"{path.name} cannot be read by FAISS ({str(exc).splitlines()[0][:120]}); "
                "rebuild it with: edge-agent pack verify --repair"
            ) from None

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(path))  # type: ignore[call-overload]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_queries(query)
        k = min(k, self.ntotal)
        scores, ids = self._index.search(q, k)  # type: ignore[attr-defined]
        return scores, ids.astype(np.int64)


def build_faiss(vectors: np.ndarray, kind: str = "auto", hnsw_m: int = 32, ef_search: int = 64) -> FaissIndex:
    """Build a FAISS inner-product index: 'flat' (exact), 'hnsw', or 'auto' by size."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if kind == "auto":
        kind = "hnsw" if n >= HNSW_MIN_ROWS else "flat"
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = ef_search
        # One thread while adding keeps the graph, and so the file, identical across builds.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(threads)
        return FaissIndex(index)
    else:
        raise PackError(f"unknown index kind {kind!r}; use flat, hnsw or auto")
    index.add(vectors)
    return FaissIndex(index)
