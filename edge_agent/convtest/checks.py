"""Checks on one agent reply: pure functions from (expectations, reply, conversation so far) to results.

Each assertion kind is one small function returning `(passed, detail)`; `check_reply` runs every
kind a turn asks for. Nothing here loads a model: the embedder for `similar_to` is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..gate import LEAK, broken_rules
from ..policy import PolicyRule
from .suite import Expect

__all__ = ["CheckResult", "Context", "check_reply", "normalise", "LEAK"]

_WORDS = re.compile(r"[\w'£$€%-]+")


@dataclass(frozen=True)
class CheckResult:
    kind: str
    passed: bool
    detail: str = ""
    score: float | None = None  # the measured value, where the check has one (similar_to: the cosine)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "passed": self.passed, "detail": self.detail}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out


@dataclass
class Context:
    """What checks may consult besides the reply: rules, earlier replies and an embedder."""

    rules: Sequence[PolicyRule] = ()
    embed: Callable[[list[str]], np.ndarray] | None = None
    rule_check: Callable[[str], list[str]] | None = None  # extra (semantic) rule check -> violated ids


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _has(text: str, phrase: str) -> bool:
    """Case-insensitive phrase match on word boundaries ("name" is not found in "rename"); a phrase
    that starts or ends with punctuation ("?", "£20") needs no boundary on that side."""
    p = normalise(phrase)
    if not p:
        return False
    left = r"(?<![\w])" if p[0].isalnum() or p[0] == "_" else ""
    right = r"(?![\w])" if p[-1].isalnum() or p[-1] == "_" else ""
    return re.search(left + re.escape(p) + right, text) is not None


def _words(text: str) -> int:
    return len(_WORDS.findall(text))


def _cut(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _route_of(reply: Any) -> str:
    return str(getattr(reply, "route", "") or "").split(":")[0]


def _fired(reply: Any) -> set[str]:
    ids = {h.strategy.id for h in getattr(reply, "hits", []) or []}
    chosen = getattr(reply, "strategy_id", "")
    return ids | ({chosen} if chosen else set())


def check_reply(expect: Expect, reply: Any, earlier: Sequence[str], ctx: Context) -> list[CheckResult]:
    """Every check `expect` asks for, in a stable order. `earlier`: this conversation's earlier replies."""
    text: str = reply.text
    low = normalise(text)
    out: list[CheckResult] = []
    c = expect.checks

    def add(kind: str, passed: bool, detail: str) -> None:
        out.append(CheckResult(kind, passed, detail))

    if "contains_any" in c:
        add(
            "contains_any",
            any(_has(low, p) for p in c["contains_any"]),
            f"expected one of {list(c['contains_any'])}",
        )
    if "contains_all" in c:
        missing = [p for p in c["contains_all"] if not _has(low, p)]
        add("contains_all", not missing, f"missing {missing}" if missing else "all present")
    if "not_contains" in c:
        found = [p for p in c["not_contains"] if _has(low, p)]
        add("not_contains", not found, f"contains {found}" if found else "none present")
    if "matches" in c:
        failed = [p for p in c["matches"] if not re.search(p, text, re.IGNORECASE)]
        add("matches", not failed, f"no match for {failed}" if failed else "matched")
    if "not_matches" in c:
        hit = [p for p in c["not_matches"] if re.search(p, text, re.IGNORECASE)]
        add("not_matches", not hit, f"matched {hit}" if hit else "no match")
    if "min_words" in c:
        add("min_words", _words(text) >= c["min_words"], f"{_words(text)} words, need >= {c['min_words']}")
    if "max_words" in c:
        add("max_words", _words(text) <= c["max_words"], f"{_words(text)} words, allowed <= {c['max_words']}")
    if c.get("rules"):
        broken = broken_rules(text, ctx.rules, ctx.rule_check)
        add("rules", not broken, f"broke {broken}" if broken else "no rule broken")
    if c.get("no_repeat"):
        repeat = bool(low) and low in {normalise(e) for e in earlier}
        add("no_repeat", not repeat, "same as an earlier reply" if repeat else "new reply")
    if c.get("language"):
        leak = LEAK.search(text)
        ok = bool(text.strip()) and leak is None
        add(
            "language",
            ok,
            "empty reply" if not text.strip() else (f"leaks {leak.group(0)!r}" if leak else "clean"),
        )
    if "strategy" in c:
        fired = _fired(reply)
        missing = [s for s in c["strategy"] if s not in fired]
        add(
            "strategy",
            not missing,
            f"{missing} did not fire (fired: {sorted(fired)})" if missing else "fired",
        )
    if "not_strategy" in c:
        fired = _fired(reply)
        bad = [s for s in c["not_strategy"] if s in fired]
        add("not_strategy", not bad, f"{bad} fired" if bad else "did not fire")
    if "route" in c:
        route = _route_of(reply)
        add("route", route in c["route"], f"route {route or '-'}, expected {'|'.join(c['route'])}")
    if "not_route" in c:
        route = _route_of(reply)
        add("not_route", route not in c["not_route"], f"route {route or '-'}")
    if "facts" in c:
        facts: Mapping[str, Any] = getattr(reply, "facts", {}) or {}
        wrong = [
            f"{k}={facts.get(k, '-')} (want {v})" for k, v in c["facts"].items() if _fact_value(facts, k) != v
        ]
        add("facts", not wrong, "; ".join(wrong) if wrong else "as expected")
    if "similar_to" in c:
        if ctx.embed is None:
            add("similar_to", False, "no embedder to compare with; run against a pack")
        else:
            vecs = ctx.embed([text or " ", c["similar_to"]])
            score = float(np.dot(vecs[0], vecs[1]))
            out.append(
                CheckResult(
                    "similar_to",
                    score >= expect.similar_threshold,
                    f"cosine {score:.3f} vs {expect.similar_threshold:.2f} to {_cut(c['similar_to'])!r}",
                    score,
                )
            )
    return out


def _fact_value(facts: Mapping[str, Any], key: str) -> Any:
    """A fact's value as a suite compares it: unknown facts are false; strings compare as text."""
    value = facts.get(key, False)
    return value if isinstance(value, (bool, str)) else str(value)
