"""Offline metrics and statistics shared by evaluation and tuning (no LLM needed).

Reply-to-reference similarity through any `Embedder`, policy-rule violation counts, repetition,
and bootstrap confidence intervals (scipy) for means and paired differences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from edge_agent.embedder import Embedder
from edge_agent.policy import PolicyRule

__all__ = [
    "reply_similarity",
    "policy_violations",
    "repeated_sentence_share",
    "Estimate",
    "mean_ci",
    "paired_diff_ci",
]


def _strip_label(text: str) -> str:
    return re.sub(r"^\s*(AGENT|ASSISTANT)\s*:\s*", "", text.strip(), flags=re.IGNORECASE)


def reply_similarity(embedder: Embedder, replies: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Cosine between each reply and its reference reply (both embedded by `embedder`)."""
    if len(replies) != len(references):
        raise ValueError("replies and references must have the same length")
    if not replies:
        return np.zeros(0, dtype=np.float32)
    a = embedder.embed([_strip_label(r) or "(empty)" for r in replies])
    b = embedder.embed([_strip_label(r) or "(empty)" for r in references])
    return np.sum(a * b, axis=1).astype(np.float64)


def policy_violations(text: str, rules: Iterable[PolicyRule]) -> list[str]:
    """Ids of forbidden rules that `text` matches (required steps are checked per conversation)."""
    return [r.id for r in rules if r.kind.startswith("forbidden") and r.matches(text)]


def repeated_sentence_share(text: str) -> float:
    """Share of sentences that repeat an earlier one (a looping detector)."""
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if not sentences:
        return 0.0
    seen: set[str] = set()
    repeats = 0
    for s in sentences:
        repeats += s in seen
        seen.add(s)
    return repeats / len(sentences)


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _bootstrap(data: np.ndarray, seed: int, resamples: int) -> tuple[float, float]:
    from scipy import stats

    if data.size < 2 or np.allclose(data, data[0]):
        return float(data.mean()) if data.size else 0.0, float(data.mean()) if data.size else 0.0
    res = stats.bootstrap((data,), np.mean, confidence_level=0.95, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(values: Sequence[float] | np.ndarray, seed: int = 0, resamples: int = 5000) -> Estimate:
    """Mean with a bootstrap 95% confidence interval."""
    data = np.asarray(values, dtype=np.float64)
    low, high = _bootstrap(data, seed, resamples)
    return Estimate(float(data.mean()) if data.size else 0.0, low, high, int(data.size))


def paired_diff_ci(a: Sequence[float], b: Sequence[float], seed: int = 0, resamples: int = 5000) -> Estimate:
    """Mean of a - b over paired items, with a bootstrap 95% CI."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("paired samples must have the same length")
    return mean_ci(x - y, seed=seed, resamples=resamples)
