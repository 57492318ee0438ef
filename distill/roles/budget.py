"""Usage accounting and budgets: calls, tokens and money per model, cache hits, and limits.

`Meter` is plain bookkeeping (no I/O); `check` raises `BudgetExceeded` before a paid call once a
limit is reached, so a run stops cleanly with its finished work saved. Concurrent calls already
in flight may overshoot a limit by at most (concurrency - 1) calls.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.errors import EdgeAgentError

from ..config import BudgetSettings, Price

__all__ = ["BudgetExceeded", "Meter", "ModelUsage", "cost_of"]


class BudgetExceeded(EdgeAgentError):
    """A call, token or cost limit was reached; the run stops and can be resumed with a larger one."""


def cost_of(prices: Mapping[str, Price], model: str, prompt_tokens: int, completion_tokens: int) -> float:
    price = prices.get(model)
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


@dataclass
class ModelUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cache_hits: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": round(self.cost, 6),
                "cache_hits": self.cache_hits}


@dataclass
class Meter:
    """Counts paid calls (and cache hits) per model against a budget."""

    budget: BudgetSettings = field(default_factory=BudgetSettings)
    prices: Mapping[str, Price] = field(default_factory=dict)
    by_model: dict[str, ModelUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _usage(self, model: str) -> ModelUsage:
        return self.by_model.setdefault(model, ModelUsage())

    def restore(self, spent: Mapping[str, Mapping[str, int]]) -> None:
        """Start from what an earlier process of the same run already paid (from the cache ledger)."""
        with self._lock:
            for model, row in spent.items():
                use = self._usage(model)
                use.calls += int(row["calls"])
                use.prompt_tokens += int(row["prompt_tokens"])
                use.completion_tokens += int(row["completion_tokens"])
                use.cost += cost_of(self.prices, model, int(row["prompt_tokens"]), int(row["completion_tokens"]))

    def record_paid(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            use = self._usage(model)
            use.calls += 1
            use.prompt_tokens += prompt_tokens
            use.completion_tokens += completion_tokens
            use.cost += cost_of(self.prices, model, prompt_tokens, completion_tokens)

    def record_hit(self, model: str) -> None:
        with self._lock:
            self._usage(model).cache_hits += 1

    @property
    def total(self) -> ModelUsage:
        out = ModelUsage()
        for use in list(self.by_model.values()):
            out.calls += use.calls
            out.prompt_tokens += use.prompt_tokens
            out.completion_tokens += use.completion_tokens
            out.cost += use.cost
            out.cache_hits += use.cache_hits
        return out

    def exceeded(self) -> str | None:
        """Which limit is reached, as a phrase, or None."""
        t, b = self.total, self.budget
        if b.max_calls is not None and t.calls >= b.max_calls:
            return f"call budget reached ({t.calls} of {b.max_calls} paid calls)"
        if b.max_tokens is not None and t.prompt_tokens + t.completion_tokens >= b.max_tokens:
            return f"token budget reached ({t.prompt_tokens + t.completion_tokens} of {b.max_tokens} tokens)"
        if b.max_cost is not None and t.cost >= b.max_cost:
            return f"cost budget reached (${t.cost:.4f} of ${b.max_cost:.4f})"
        return None

    def check(self, advice: str | None = None) -> None:
        """Raise `BudgetExceeded` once a limit is reached; `advice` says how to continue."""
        reason = self.exceeded()
        if reason:
            raise BudgetExceeded(f"{reason}; " + (advice or "everything so far is saved: raise the limit and run "
                                                  "edge-agent distill resume RUN_DIR"))

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total.to_json(), "by_model": {m: u.to_json() for m, u in sorted(self.by_model.items())}}
