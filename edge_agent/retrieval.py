"""Per-turn strategy retrieval: build the query, search, then select hits.

`select_hits` is pure: threshold (inject nothing when nothing is relevant), near-duplicate
collapse and a token budget for what gets injected. `Retriever` wires the embedder and index.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .conversation import query_text
from .embedder import Embedder
from .errors import ConfigError
from .index import VectorIndex
from .keys import check_keys
from .library import Strategy

__all__ = ["Hit", "RetrievalConfig", "Retrieval", "Retriever", "select_hits", "approx_tokens"]


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token for English BPE vocabularies)."""
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass(frozen=True)
class Hit:
    strategy: Strategy
    score: float
    row: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.strategy.id, "score": round(float(self.score), 4), "row": self.row}


@dataclass(frozen=True)
class RetrievalConfig:
    """How a turn's strategies are found. Stored per pack in manifest.settings.retrieval."""

    top_k: int = 2
    threshold: float = 0.35  # cosine; below it a hit is not relevant enough to inject
    query_turns: int = 3  # recent customer/agent messages embedded; 0 = whole conversation
    dedupe: float = 0.95  # hits whose vectors are closer than this collapse into the best one
    budget_tokens: int = 160  # injected guidance never exceeds this many student tokens
    candidates: int = 8  # searched before threshold/dedupe/budget

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "RetrievalConfig":
        check_keys(data, cls.__dataclass_fields__, "retrieval settings")
        values = {k: _number(k, v, cls.__dataclass_fields__[k].type) for k, v in data.items()}
        cfg = cls(**values)
        if cfg.top_k < 0 or cfg.budget_tokens < 0 or cfg.candidates < 1:
            raise ConfigError("retrieval top_k and budget_tokens must be >= 0 and candidates >= 1")
        if not -1.0 <= cfg.threshold <= 1.0:
            raise ConfigError(f"retrieval threshold {cfg.threshold} is not a cosine in [-1, 1]")
        return cfg

    def merged(self, **overrides: Any) -> "RetrievalConfig":
        values = {**self.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
        return RetrievalConfig.from_mapping(values)


def _number(key: str, value: Any, kind: Any) -> Any:
    """A retrieval setting checked against its field's type ("int" or "float"), named in the error."""
    integral = str(kind) in ("int", "<class 'int'>")
    ok = isinstance(value, int) if integral else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (not integral and not math.isfinite(value)):
        want = "a whole number" if integral else "a finite number"
        raise ConfigError(f"retrieval setting {key} must be {want}, got {value!r} (e.g. {key} = "
                          f"{RetrievalConfig.__dataclass_fields__[key].default})")
    return value


def select_hits(
    scores: Sequence[float],
    rows: Sequence[int],
    strategies: Sequence[Strategy],
    vectors: np.ndarray | None,
    config: RetrievalConfig,
    cost: Callable[[Strategy], int],
) -> list[Hit]:
    """Choose what to inject from ranked candidates (best first).

    Drops candidates under the threshold or with row -1 (FAISS padding), collapses near
    duplicates (keeping the better-ranked), and stops adding when the token budget would be
    exceeded; at most `top_k` hits.
    """
    chosen: list[Hit] = []
    spent = 0
    for score, row in zip(scores, rows):
        if len(chosen) >= config.top_k:
            break
        row = int(row)
        if row < 0 or float(score) < config.threshold:
            continue
        if vectors is not None and any(
            float(vectors[row] @ vectors[h.row]) >= config.dedupe for h in chosen
        ):
            continue
        strategy = strategies[row]
        price = cost(strategy)
        if spent + price > config.budget_tokens:
            continue
        spent += price
        chosen.append(Hit(strategy=strategy, score=float(score), row=row))
    return chosen


@dataclass(frozen=True)
class Retrieval:
    """What one retrieval did: the query, the hits and how long each step took (ms)."""

    query: str
    hits: list[Hit]
    timings: Mapping[str, float] = field(default_factory=dict)


class Retriever:
    """Embeds the recent conversation and selects strategies from an index."""

    def __init__(
        self,
        embedder: Embedder,
        index: VectorIndex,
        strategies: Sequence[Strategy],
        vectors: np.ndarray | None,
        config: RetrievalConfig | None = None,
        cost: Callable[[Strategy], int] | None = None,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.strategies = strategies
        self.vectors = vectors
        self.config = config or RetrievalConfig()
        self.cost = cost or (lambda s: approx_tokens(s.compact or s.strategy))

    def search_text(self, text: str, config: RetrievalConfig | None = None, *,
                    vector: np.ndarray | None = None) -> Retrieval:
        """Hits for `text`; `vector` is `text` already embedded this turn (then it is not embedded again)."""
        cfg = config or self.config
        if cfg.top_k == 0 or not text.strip():
            return Retrieval(query=text, hits=[], timings={"embed_ms": 0.0, "search_ms": 0.0})
        t0 = time.perf_counter()
        vec = self.embedder.embed([text]) if vector is None else np.atleast_2d(vector)
        t1 = time.perf_counter()
        scores, rows = self.index.search(vec, max(cfg.candidates, cfg.top_k))
        t2 = time.perf_counter()
        hits = select_hits(scores[0], rows[0], self.strategies, self.vectors, cfg, self.cost)
        t3 = time.perf_counter()
        return Retrieval(query=text, hits=hits, timings={
            "embed_ms": (t1 - t0) * 1e3, "search_ms": (t2 - t1) * 1e3, "select_ms": (t3 - t2) * 1e3})

    def retrieve(self, messages: Sequence[Mapping[str, str]], config: RetrievalConfig | None = None, *,
                 vector: np.ndarray | None = None) -> Retrieval:
        """Hits for the recent conversation (`query_text`); `vector`: that text already embedded."""
        cfg = config or self.config
        return self.search_text(query_text(messages, cfg.query_turns), cfg, vector=vector)
