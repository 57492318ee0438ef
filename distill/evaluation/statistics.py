"""Statistics over evaluated conversations: CIs per condition, paired differences, pass^k, tables.

Plain functions over `Conversation` records; bootstrap intervals come from `distill.metrics`
(scipy), pass^k from exact binomial counts (scipy.special.comb). Nothing here calls a model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import comb

from distill.metrics import Estimate, mean_ci, paired_diff_ci

from .records import Conversation

__all__ = ["METRICS", "estimate_json", "metric_value", "pass_hat_k", "passed", "summarise"]

# name -> (label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "judge": ("conversation judge (1-5)", True),
    "closeness": ("per-turn closeness to the teacher (1-5)", True),
    "similarity": ("embedding similarity to the teacher reply", True),
    "violations": ("forbidden-rule violations per conversation", False),
    "missing_steps": ("required steps never taken per conversation", False),
    "latency_ms": ("mean latency per turn (ms)", False),
}


def _mean(values: Sequence[float | int | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def metric_value(conv: Conversation, metric: str) -> float | None:
    """One number per conversation (None when it was not measured)."""
    if conv.error:
        return None
    if metric == "judge":
        return None if conv.judge_score is None else float(conv.judge_score)
    if metric == "closeness":
        return _mean([t.closeness for t in conv.turns])
    if metric == "similarity":
        return _mean([t.similarity for t in conv.turns])
    if metric == "violations":
        return float(sum(len(t.violations) for t in conv.turns))
    if metric == "missing_steps":
        return float(len(conv.missing_steps))
    if metric == "latency_ms":
        return _mean([t.latency_ms for t in conv.turns])
    raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")


def passed(conv: Conversation, pass_level: int = 4, pass_similarity: float = 0.5) -> bool:
    """A trial passes with no forbidden-rule violation and judge >= pass_level (or, unjudged,
    mean similarity >= pass_similarity)."""
    if conv.error or any(t.violations for t in conv.turns):
        return False
    if conv.judge_score is not None:
        return conv.judge_score >= pass_level
    sim = metric_value(conv, "similarity")
    return sim is not None and sim >= pass_similarity


def pass_hat_k(successes: Mapping[str, Sequence[bool]], k: int) -> float | None:
    """pass^k: the chance that k trials of a case, drawn without replacement, all pass, averaged
    over cases with at least k trials (None when no case has k trials)."""
    per_case = [comb(sum(v), k, exact=True) / comb(len(v), k, exact=True)
                for v in successes.values() if len(v) >= k]
    return float(np.mean(per_case)) if per_case else None


def estimate_json(e: Estimate) -> dict[str, float | int]:
    return {"mean": round(e.mean, 6), "low": round(e.low, 6), "high": round(e.high, 6), "n": e.n}


def _by_condition(conversations: Sequence[Conversation]) -> dict[str, list[Conversation]]:
    out: dict[str, list[Conversation]] = defaultdict(list)
    for c in conversations:
        out[c.condition].append(c)
    return dict(out)


def summarise(conversations: Sequence[Conversation], *, baseline: str | None = None, pass_level: int = 4,
              pass_similarity: float = 0.5, seed: int = 0, resamples: int = 5000) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data."""
    groups = _by_condition(conversations)
    names = list(groups)
    base = baseline if baseline in groups else (names[0] if names else None)
    is_pass: Callable[[Conversation], bool] = lambda c: passed(c, pass_level, pass_similarity)
    measured = [m for m in METRICS if any(metric_value(c, m) is not None for c in conversations)]
    primary = "judge" if "judge" in measured else ("similarity" if "similarity" in measured else
                                                   (measured[0] if measured else "violations"))
    conditions: dict[str, Any] = {}
    for name, convs in groups.items():
        row: dict[str, Any] = {"conversations": len(convs), "errors": sum(bool(c.error) for c in convs)}
        for m in measured:
            vals = [v for v in (metric_value(c, m) for c in convs) if v is not None]
            row[m] = estimate_json(mean_ci(vals, seed=seed, resamples=resamples)) if vals else None
        judged = [c for c in convs if c.judge_score is not None]
        row["excellent"] = ({"count": sum(c.judge_score == 5 for c in judged), "of": len(judged),
                             **estimate_json(mean_ci([float(c.judge_score == 5) for c in judged], seed=seed,
                                                     resamples=resamples))} if judged else None)
        trials: dict[str, list[bool]] = defaultdict(list)
        for c in convs:
            trials[c.case.id].append(is_pass(c))
        max_k = max((len(v) for v in trials.values()), default=0)
        row["pass_k"] = {str(k): pass_hat_k(trials, k) for k in range(1, max_k + 1)}
        conditions[name] = row
    differences: dict[str, Any] = {}
    if base is not None:
        ref = {c.case.key: c for c in groups[base]}
        for name in names:
            if name == base:
                continue
            diff: dict[str, Any] = {}
            for m in measured:
                pairs = [(metric_value(c, m), metric_value(ref[c.case.key], m)) for c in groups[name]
                         if c.case.key in ref]
                kept = [(a, b) for a, b in pairs if a is not None and b is not None]
                if kept:
                    est = paired_diff_ci([a for a, _ in kept], [b for _, b in kept], seed=seed, resamples=resamples)
                    diff[m] = {**estimate_json(est), "excludes_zero": est.excludes_zero()}
            differences[f"{name} - {base}"] = diff
    personas = sorted({c.case.persona_key for c in conversations})
    table = [[_mean([metric_value(c, primary) for c in groups[n] if c.case.persona_key == p]) for p in personas]
             for n in names]
    strategies = {n: dict(Counter(s for c in groups[n] for t in c.turns for s in t.strategies).most_common())
                  for n in names}
    latency: dict[str, list[list[float]]] = {}
    for n in names:
        by_turn: dict[int, list[float]] = defaultdict(list)
        for c in groups[n]:
            for i, t in enumerate(c.turns):
                by_turn[i].append(round(t.latency_ms, 2))
        latency[n] = [by_turn[i] for i in sorted(by_turn)]
    return {
        "baseline": base, "primary": primary, "measured": measured,
        "metric_labels": {m: METRICS[m][0] for m in measured},
        "higher_is_better": {m: METRICS[m][1] for m in measured},
        "pass_rule": f"no forbidden-rule violation and judge >= {pass_level} "
                     f"(unjudged: mean similarity >= {pass_similarity})",
        "conditions": conditions, "differences": differences,
        "per_persona": {"metric": primary, "personas": personas, "conditions": names, "values": table},
        "strategies": strategies, "latency_by_turn": latency,
    }
