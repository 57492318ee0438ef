"""Hit selection (table-driven and property tests) and the FAISS-vs-numpy search contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.conversation import parse_transcript, query_text, render_transcript
from edge_agent.embedder import HashEmbedder, l2_normalise
from edge_agent.index import ExactIndex, build_faiss
from edge_agent.library import Strategy
from edge_agent.retrieval import RetrievalConfig, Retriever, select_hits
from tests.conftest import PAPER_DIR, make_strategies

S = [Strategy(id=f"s{i}", scenario=f"CUSTOMER: case {i}", strategy="x" * 40, compact="y" * (4 * (i + 1)))
     for i in range(5)]
COST = lambda s: len(s.compact) // 4  # noqa: E731


@pytest.mark.parametrize(
    "scores,rows,cfg,expected",
    [
        ([0.9, 0.8, 0.7], [0, 1, 2], RetrievalConfig(top_k=2, threshold=0.5), ["s0", "s1"]),
        ([0.9, 0.4, 0.3], [0, 1, 2], RetrievalConfig(top_k=3, threshold=0.5), ["s0"]),
        ([0.2, 0.1], [0, 1], RetrievalConfig(top_k=2, threshold=0.5), []),
        ([0.9, 0.8], [3, -1], RetrievalConfig(top_k=2, threshold=0.0), ["s3"]),
        # budget: s4 costs 5, s3 costs 4, s0 costs 1; budget 6 takes s4 then skips s3, takes s0
        ([0.9, 0.8, 0.7], [4, 3, 0], RetrievalConfig(top_k=3, threshold=0.0, budget_tokens=6), ["s4", "s0"]),
        ([0.9], [0], RetrievalConfig(top_k=0, threshold=0.0), []),
    ],
)
def test_select_hits_table(scores, rows, cfg, expected) -> None:
    assert [h.strategy.id for h in select_hits(scores, rows, S, None, cfg, COST)] == expected


def test_near_duplicates_collapse() -> None:
    v = l2_normalise(np.array([[1, 0, 0], [0.999, 0.04, 0], [0, 1, 0]], np.float32))
    hits = select_hits([0.9, 0.89, 0.5], [0, 1, 2], S, v, RetrievalConfig(top_k=3, threshold=0.0, dedupe=0.95), COST)
    assert [h.row for h in hits] == [0, 2]


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(-1, 1), min_size=0, max_size=5),
    top_k=st.integers(0, 5),
    threshold=st.floats(-1, 1),
    budget=st.integers(0, 20),
)
def test_select_hits_properties(scores, top_k, threshold, budget) -> None:
    scores = sorted(scores, reverse=True)
    rows = list(range(len(scores)))
    cfg = RetrievalConfig(top_k=top_k, threshold=threshold, budget_tokens=budget, dedupe=1.1)
    hits = select_hits(scores, rows, S, None, cfg, COST)
    assert len(hits) <= top_k
    assert all(h.score >= threshold for h in hits)
    assert sum(COST(h.strategy) for h in hits) <= budget
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.row for h in hits}) == len(hits)


def test_query_text_uses_recent_turns() -> None:
    history = [{"role": "system", "content": "sys"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(6)]
    text = query_text(history, 2)
    assert text == "CUSTOMER: turn 4\n\nAGENT: turn 5"
    assert query_text(history, 0).startswith("CUSTOMER: turn 0")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1).map(
    lambda s: s.replace(":", " ").strip() or "x"), min_size=1, max_size=6))
def test_transcript_roundtrip(contents) -> None:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]
    back = parse_transcript(render_transcript(msgs))
    assert [m["role"] for m in back] == [m["role"] for m in msgs]


def test_retriever_threshold_injects_nothing_when_irrelevant() -> None:
    emb = HashEmbedder(dim=64)
    items = make_strategies(8)
    vecs = emb.embed([s.scenario for s in items])
    r = Retriever(emb, ExactIndex(vecs), items, vecs, RetrievalConfig(threshold=0.5, top_k=2))
    assert r.retrieve([{"role": "user", "content": "zebra quantum pancake"}]).hits == []
    found = r.retrieve([{"role": "user", "content": "my internet is down since yesterday"}])
    assert found.hits and found.hits[0].strategy.id == "t-000"


def _contract(vectors: np.ndarray, queries: np.ndarray, k: int) -> None:
    exact = ExactIndex(vectors)
    flat = build_faiss(vectors, kind="flat")
    es, ei = exact.search(queries, k)
    fs, fi = flat.search(queries, k)
    for q in range(len(queries)):
        # identical ids, except where two scores tie within float error
        for a, b, sa in zip(ei[q], fi[q], es[q]):
            if a != b:
                assert abs(float(vectors[a] @ queries[q]) - float(vectors[b] @ queries[q])) < 1e-5, (a, b, sa)
    np.testing.assert_allclose(es, fs, atol=1e-5)


def test_faiss_matches_numpy_on_generated_data() -> None:
    rng = np.random.default_rng(0)
    vectors = l2_normalise(rng.standard_normal((2000, 48)).astype(np.float32))
    queries = l2_normalise(rng.standard_normal((50, 48)).astype(np.float32))
    _contract(vectors, queries, 10)


@pytest.mark.skipif(not (PAPER_DIR / "library.jsonl").is_file(), reason="../shared paper data absent")
def test_faiss_matches_numpy_on_paper_library() -> None:
    rows = [json.loads(line) for line in (PAPER_DIR / "library.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 248
    emb = HashEmbedder(dim=128)
    vectors = emb.embed([r["scenario"] for r in rows])
    queries = emb.embed([r["teacher_reply"] for r in rows[:60]])
    _contract(vectors, queries, 5)
