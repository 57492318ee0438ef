"""Run a suite against an agent: each conversation is a real multi-turn run (the agent's own replies
are fed back into the history), and every reply is checked.

The agent is anything with `reply(history) -> Reply`; tests pass an Agent over a scripted student.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .checks import CheckResult, Context, check_reply
from .suite import Conversation, Suite

__all__ = ["TurnResult", "ConversationResult", "SuiteResult", "run_suite", "run_conversation"]


@dataclass(frozen=True)
class TurnResult:
    index: int  # 1-based customer line
    customer: str
    reply: str
    checks: tuple[CheckResult, ...]
    route: str = ""
    reason: str = ""
    strategies: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    ms: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "turn": self.index,
            "customer": self.customer,
            "reply": self.reply,
            "passed": self.passed,
            "route": self.route,
            "reason": self.reason,
            "strategies": list(self.strategies),
            "facts": self.facts,
            "ms": round(self.ms, 1),
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True)
class ConversationResult:
    id: str
    tags: tuple[str, ...]
    turns: tuple[TurnResult, ...]
    error: str = ""  # the agent raised: the remaining lines were not run

    @property
    def passed(self) -> bool:
        return not self.error and all(t.passed for t in self.turns)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tags": list(self.tags),
            "passed": self.passed,
            "error": self.error,
            "turns": [t.to_json() for t in self.turns],
        }


@dataclass(frozen=True)
class SuiteResult:
    name: str
    conversations: tuple[ConversationResult, ...]
    seconds: float

    @property
    def turns(self) -> list[TurnResult]:
        return [t for c in self.conversations for t in c.turns]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.conversations)

    def summary(self) -> dict[str, Any]:
        turns = self.turns
        checks = [c for t in turns for c in t.checks]
        kinds: dict[str, dict[str, int]] = {}
        for c in checks:
            row = kinds.setdefault(c.kind, {"passed": 0, "failed": 0})
            row["passed" if c.passed else "failed"] += 1
        routes: dict[str, dict[str, int]] = {}
        for t in turns:
            row = routes.setdefault(t.route.split(":")[0] or "-", {"turns": 0, "passed": 0})
            row["turns"] += 1
            row["passed"] += int(t.passed)
        ms = [t.ms for t in turns]
        return {
            "suite": self.name,
            "conversations": len(self.conversations),
            "conversations_passed": sum(c.passed for c in self.conversations),
            "errors": sum(bool(c.error) for c in self.conversations),
            "turns": len(turns),
            "turns_passed": sum(t.passed for t in turns),
            "turn_pass_rate": (sum(t.passed for t in turns) / len(turns)) if turns else 0.0,
            "checks": len(checks),
            "checks_passed": sum(c.passed for c in checks),
            "checks_failed": sum(not c.passed for c in checks),
            "kinds": dict(sorted(kinds.items())),
            "routes": dict(sorted(routes.items())),
            "seconds": round(self.seconds, 2),
            "turn_ms_p50": round(statistics.median(ms), 1) if ms else 0.0,
            "failed_kinds": dict(Counter(c.kind for c in checks if not c.passed)),
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "conversations": [c.to_json() for c in self.conversations]}


def run_conversation(conv: Conversation, agent: Any, ctx: Context) -> ConversationResult:
    history: list[dict[str, str]] = [dict(m) for m in conv.history]
    earlier = [m["content"] for m in history if m["role"] == "assistant"]
    results: list[TurnResult] = []
    for i, turn in enumerate(conv.turns, 1):
        history.append({"role": "user", "content": turn.customer})
        start = time.perf_counter()
        try:
            reply = agent.reply(history)
        except Exception as exc:  # an agent failure ends this conversation, not the whole suite
            return ConversationResult(
                conv.id, conv.tags, tuple(results), error=f"turn {i}: {type(exc).__name__}: {exc}"
            )
        ms = (time.perf_counter() - start) * 1e3
        checks = check_reply(turn.expect, reply, earlier, ctx)
        results.append(
            TurnResult(
                index=i,
                customer=turn.customer,
                reply=reply.text,
                checks=tuple(checks),
                route=str(getattr(reply, "route", "") or ""),
                reason=str(getattr(reply, "reason", "") or ""),
                strategies=tuple(h.strategy.id for h in getattr(reply, "hits", []) or []),
                facts=dict(getattr(reply, "facts", {}) or {}),
                ms=ms,
            )
        )
        history.append({"role": "assistant", "content": reply.text})
        earlier.append(reply.text)
    return ConversationResult(conv.id, conv.tags, tuple(results))


def run_suite(
    suite: Suite,
    agent: Any,
    ctx: Context,
    on_conversation: Callable[[ConversationResult], None] | None = None,
) -> SuiteResult:
    start = time.perf_counter()
    done: list[ConversationResult] = []
    for conv in suite.conversations:
        result = run_conversation(conv, agent, ctx)
        done.append(result)
        if on_conversation is not None:
            on_conversation(result)
    return SuiteResult(suite.name, tuple(done), time.perf_counter() - start)


def merge(results: Sequence[SuiteResult]) -> SuiteResult:
    """Several suites' results as one (for a run over several files)."""
    name = "+".join(r.name for r in results)
    return SuiteResult(
        name, tuple(c for r in results for c in r.conversations), sum(r.seconds for r in results)
    )
