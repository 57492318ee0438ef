"""The numpy-only mobile reader: vector header encode/decode, corruption errors, brute-force top-k."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_agent.errors import PackError
from edge_agent.index import ExactIndex
from edge_agent.mobile import HEADER, decode_vectors, encode_vectors, top_k


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_header_layout_and_roundtrip() -> None:
    v = _unit(5, 8)
    data = encode_vectors(v)
    assert HEADER.size == 16 and len(data) == 16 + 5 * 8 * 2
    assert data[:4] == b"EAVF" and struct.unpack_from("<HHII", data, 4) == (1, 1, 5, 8)
    back = decode_vectors(data)
    assert back.dtype == np.dtype("<f2") and back.shape == (5, 8)
    assert np.max(np.abs(back.astype(np.float32) - v)) < 1e-3
    assert np.frombuffer(data[16:18], "<f2")[0] == np.float16(v[0, 0])  # little-endian float16, row-major


@pytest.mark.parametrize("mangle, message", [
    (lambda d: d[:10], "shorter than its 16-byte header"),
    (lambda d: b"XXXX" + d[4:], "not an edge-agent vector file"),
    (lambda d: d[:4] + struct.pack("<H", 2) + d[6:], "version 2"),
    (lambda d: d[:-2], "truncated"),
])
def test_corrupt_vectors_are_refused(mangle, message: str) -> None:
    with pytest.raises(PackError, match=message):
        decode_vectors(mangle(encode_vectors(_unit(3, 4))))


def test_top_k_matches_exact_index_and_breaks_ties_by_row() -> None:
    v = _unit(50, 16, seed=2)
    q = _unit(1, 16, seed=3)[0]
    scores, rows = top_k(v, q, 5)
    want_scores, want_rows = ExactIndex(v).search(q, 5)
    assert rows.tolist() == want_rows[0].tolist() and np.allclose(scores, want_scores[0], atol=1e-6)
    tied = np.tile(v[:1], (4, 1))
    assert top_k(tied, v[0], 4)[1].tolist() == [0, 1, 2, 3]
    with pytest.raises(PackError, match="dim 8 but the bundle's vectors have dim 16"):
        top_k(v, np.ones(8), 3)
