"""Measure rendering modes x decoding settings on a development split and pick the best.

Objective: mean cosine between the student's reply and the recorded teacher reply, subject to a
policy-violation rate no higher than the base student's (no guidance, same decoding settings).
Generation is the only expensive step; pass a `CachedChat` student (distill.roles.cache) to make
reruns free.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distill.metrics import (
    Estimate,
    mean_ci,
    paired_diff_ci,
    policy_violations,
    repeated_sentence_share,
    reply_similarity,
)
from edge_agent.agent import Agent
from edge_agent.backends import ChatBackend, GenerationConfig
from edge_agent.embedder import Embedder
from edge_agent.errors import ConfigError
from edge_agent.policy import PolicyRule
from edge_agent.rendering import PromptConfig
from edge_agent.retrieval import Retriever

__all__ = [
    "DEFAULT_MODES",
    "Candidate",
    "DevItem",
    "Outcome",
    "Row",
    "TuneResult",
    "candidate_grid",
    "compare",
    "format_table",
    "generate",
    "make_agent_factory",
    "tune",
]

DEFAULT_MODES = (
    "plain",
    "bracketed",
    "compact",
    "system",
    "exemplar",
    "exemplar_system",
    "demo",
    "compact+exemplar",
    "system+demo",
    "adapt",
)


@dataclass(frozen=True)
class Candidate:
    """One rendering mode with its parameters and decoding overrides."""

    mode: str
    params: Mapping[str, Any] = field(default_factory=dict)
    generation: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    retrieval: Mapping[str, Any] = field(default_factory=dict)  # overrides, e.g. more candidates to rerank

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        extra = [f"{k}={v}" for k, v in sorted(self.params.items())]
        extra += [f"{k}={v}" for k, v in sorted(self.generation.items())]
        return self.mode + (f" ({', '.join(extra)})" if extra else "")

    def to_json(self) -> dict[str, Any]:
        out = {"mode": self.mode, "params": dict(self.params), "generation": dict(self.generation)}
        return {**out, "retrieval": dict(self.retrieval)} if self.retrieval else out


@dataclass(frozen=True)
class DevItem:
    """A conversation ending with the customer, and the teacher's recorded next reply."""

    id: str
    history: list[dict[str, str]]
    reference: str


@dataclass
class Outcome:
    candidate: Candidate
    replies: list[str] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    similarity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    violations: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    name: str
    candidate: Candidate
    similarity: Estimate
    diff: Estimate  # paired difference against the base with the same decoding settings
    violation_rate: float
    base_violation_rate: float
    prompt_tokens: float
    ttft_ms: float
    repeated: float
    routes: Mapping[str, int]

    @property
    def feasible(self) -> bool:
        return self.violation_rate <= self.base_violation_rate + 1e-9

    def to_json(self) -> dict[str, Any]:
        est = lambda e: {"mean": round(e.mean, 4), "low": round(e.low, 4), "high": round(e.high, 4)}
        return {
            "name": self.name,
            **self.candidate.to_json(),
            "similarity": est(self.similarity),
            "diff_vs_base": est(self.diff),
            "violation_rate": round(self.violation_rate, 4),
            "base_violation_rate": round(self.base_violation_rate, 4),
            "feasible": self.feasible,
            "prompt_tokens": round(self.prompt_tokens, 1),
            "ttft_ms": round(self.ttft_ms, 1),
            "repeated_sentence_share": round(self.repeated, 4),
            "routes": dict(self.routes),
        }


@dataclass(frozen=True)
class TuneResult:
    rows: list[Row]
    best: Row
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"n_items": self.n, "best": self.best.to_json(), "rows": [r.to_json() for r in self.rows]}


def candidate_grid(
    modes: Sequence[str],
    generations: Sequence[Mapping[str, Any]] = ({},),
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Candidate]:
    """Every mode under every decoding override; "plain" is always included as the base."""
    names = list(dict.fromkeys(["plain", *modes]))
    return [Candidate(m, dict((params or {}).get(m, {})), dict(g)) for g in generations for m in names]


def make_agent_factory(
    student: ChatBackend,
    system_prompt: str,
    retriever: Retriever | None,
    generation: GenerationConfig,
    rules: Sequence[PolicyRule] = (),
) -> Callable[[Candidate], Agent]:
    """Agents sharing one student and retriever, each with a candidate's mode and decoding."""

    def factory(c: Candidate) -> Agent:
        prompting = PromptConfig.from_mapping({"mode": c.mode, "params": dict(c.params)})
        retrieval = retriever.config.merged(**dict(c.retrieval)) if retriever is not None else None
        return Agent(
            student,
            system_prompt=system_prompt,
            retriever=retriever,
            retrieval=retrieval,
            prompting=prompting,
            generation=generation.merged(**dict(c.generation)),
            rules=rules,
        )

    return factory


def generate(
    factory: Callable[[Candidate], Agent],
    items: Sequence[DevItem],
    candidates: Sequence[Candidate],
    progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Run every candidate on every item (the expensive part)."""
    outcomes = []
    for c in candidates:
        agent = factory(c)
        out = Outcome(c)
        for item in items:
            reply = agent.reply(item.history)
            out.replies.append(reply.text)
            out.prompt_tokens.append(reply.usage.prompt_tokens)
            out.ttft_ms.append(float(reply.timings.get("ttft_ms", reply.timings.get("generate_ms", 0.0))))
            out.routes.append(reply.route)
            if progress is not None:
                progress(1)
        outcomes.append(out)
    return outcomes


def _base_for(c: Candidate, outcomes: Sequence[Outcome]) -> Outcome:
    plains = [o for o in outcomes if o.candidate.mode == "plain"]
    if not plains:
        raise ConfigError("tuning needs the 'plain' mode as the base; add it to the modes")
    same = [o for o in plains if dict(o.candidate.generation) == dict(c.generation)]
    return (same or plains)[0]


def compare(
    outcomes: Sequence[Outcome],
    items: Sequence[DevItem],
    embedder: Embedder,
    rules: Sequence[PolicyRule] = (),
    seed: int = 0,
) -> TuneResult:
    """Score every outcome, pair it with its base and choose the best feasible candidate."""
    refs = [i.reference for i in items]
    for o in outcomes:
        o.similarity = reply_similarity(embedder, o.replies, refs)
        o.violations = [policy_violations(r, rules) for r in o.replies]
    rows = []
    for o in outcomes:
        base = _base_for(o.candidate, outcomes)
        routes: dict[str, int] = {}
        for r in o.routes:
            if r:
                key = r.split(":")[0]
                routes[key] = routes.get(key, 0) + 1
        rows.append(
            Row(
                name=o.candidate.name,
                candidate=o.candidate,
                similarity=mean_ci(o.similarity.tolist(), seed=seed),
                diff=paired_diff_ci(o.similarity.tolist(), base.similarity.tolist(), seed=seed),
                violation_rate=float(np.mean([bool(v) for v in o.violations])) if o.violations else 0.0,
                base_violation_rate=float(np.mean([bool(v) for v in base.violations]))
                if base.violations
                else 0.0,
                prompt_tokens=float(np.mean(o.prompt_tokens)) if o.prompt_tokens else 0.0,
                ttft_ms=float(np.mean(o.ttft_ms)) if o.ttft_ms else 0.0,
                repeated=float(np.mean([repeated_sentence_share(r) for r in o.replies]))
                if o.replies
                else 0.0,
                routes=routes,
            )
        )
    feasible = [r for r in rows if r.feasible] or rows
    best = max(feasible, key=lambda r: (r.similarity.mean, -r.prompt_tokens))
    return TuneResult(rows=rows, best=best, n=len(items))


def tune(
    factory: Callable[[Candidate], Agent],
    items: Sequence[DevItem],
    candidates: Sequence[Candidate],
    embedder: Embedder,
    rules: Sequence[PolicyRule] = (),
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
) -> TuneResult:
    if not items:
        raise ConfigError(
            "the development split is empty; pass a file with conversations and teacher replies"
        )
    return compare(generate(factory, items, candidates, progress), items, embedder, rules, seed)


def format_table(result: TuneResult) -> str:
    """A plain-text table, best first marked with '*'."""
    head = (
        f"{'mode':34} {'cosine [95% CI]':>24} {'diff vs base [95% CI]':>26} {'viol':>6} {'base':>6} "
        f"{'p.tok':>6} {'ttft ms':>8} {'rep':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in result.rows:
        mark = "*" if r is result.best else " "
        sim = f"{r.similarity.mean:.3f} [{r.similarity.low:.3f}, {r.similarity.high:.3f}]"
        lines.append(
            f"{mark}{r.name[:33]:33} {sim:>24} {r.diff!s:>26} {r.violation_rate:6.1%} "
            f"{r.base_violation_rate:6.1%} {r.prompt_tokens:6.0f} {r.ttft_ms:8.0f} {r.repeated:5.2f}"
        )
    return "\n".join(lines)


def dumps(result: TuneResult) -> str:
    return json.dumps(result.to_json(), indent=2, sort_keys=True)
