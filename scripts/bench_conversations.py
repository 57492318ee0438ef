#!/usr/bin/env python
"""Conversation benchmark: the shipped demo pack and default student over the conversation suites,
and the paper-airline held-out contexts, against the Grounded-turns targets.

Prints one table and exits 1 when a target is missed:
  demo suite: >= 90% of turns pass every check; 0 replies claiming a fact the conversation did not
  establish; 0 shown student drafts that fail the gate; 0 rule violations; exemplar/clarify turns
  under 150 ms p50. Paper airline (../shared/data/paper-airline, held-out stage-1 contexts): the
  shipped grounded mode's mean cosine to the teacher not lower than adapt+rerank beyond noise (paired
  bootstrap 95% CI of the difference reaches 0) and refund promises <= 1.2%.
The held-out demo suite is reported, never tuned on, and has no target.

    .venv/bin/python scripts/bench_conversations.py                 # everything (~10 min on 2 cores)
    .venv/bin/python scripts/bench_conversations.py --skip-paper    # the demo suites only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from distill.metrics import paired_diff_ci
from edge_agent.adapt import context_text  # noqa: E402
from edge_agent.agent import Agent  # noqa: E402
from edge_agent.backends import ChatBackend  # noqa: E402
from edge_agent.convtest import load_suite, run_suite  # noqa: E402
from edge_agent.convtest.cli import make_context  # noqa: E402
from edge_agent.facts import Facts  # noqa: E402
from edge_agent.files import home_dir  # noqa: E402
from edge_agent.gate import gate_reply, unestablished_claims  # noqa: E402

SUITES = REPO / "tests" / "conversations"
PAPER = REPO.parent / "shared" / "data" / "paper-airline"
TARGET_PASS = 0.90
TARGET_MS = 150.0
TARGET_REFUND = 0.012


def audit(result, agent: Agent, suite) -> dict:
    """Counts made on what was shown, independently of the suite's own checks."""
    g = agent.grounding()
    claims = gate_fail = rules = 0
    by_route: dict[str, list[float]] = {}
    for conv, spec in zip(result.conversations, suite.conversations):
        history = [dict(m) for m in spec.history]
        for turn in conv.turns:
            history.append({"role": "user", "content": turn.customer})
            facts = Facts(dict(turn.facts))
            base = turn.route.split(":")[0]
            by_route.setdefault(base, []).append(turn.ms)
            if unestablished_claims(turn.reply, g.planner.specs, facts):
                claims += 1
            if agent.rule_violations(turn.reply):
                rules += 1
            if base == "generated":
                earlier = [m["content"] for m in history if m["role"] == "assistant"]
                if gate_reply(
                    turn.reply,
                    context=context_text(agent.system_prompt, history[:-1]) + "\n" + g.planner.vocabulary,
                    earlier=earlier,
                    facts=facts,
                    specs=g.planner.specs,
                    rules=agent.rules,
                ):
                    gate_fail += 1
            history.append({"role": "assistant", "content": turn.reply})
    return {
        "claims": claims,
        "gate_fail": gate_fail,
        "rules": rules,
        "ms_p50": {r: statistics.median(v) for r, v in by_route.items()},
    }


def run_demo(name: str, agent: Agent) -> dict:
    suite = load_suite(SUITES / f"{name}.toml")
    result = run_suite(suite, agent, make_context(agent))
    s = result.summary()
    return {
        "suite": name,
        "turns": s["turns"],
        "passed": s["turns_passed"],
        "rate": s["turn_pass_rate"],
        "routes": s["routes"],
        **audit(result, agent, suite),
    }


def run_paper(student: ChatBackend, limit: int) -> dict:
    made = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "paper_suite.py"),
            *(["--limit", str(limit)] if limit else []),
        ],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        raise SystemExit(f"paper_suite.py failed: {made.stderr.strip()}")
    bench = home_dir() / "bench"
    suite = load_suite(bench / "paper-airline.toml")
    pack = bench / "paper-airline-pack"
    rows = {}
    configs = {
        "adapt+rerank (before)": {
            "mode": "adapt",
            "params": {"min_score": 0.6, "rerank": 1.0, "fallback": "plain"},
        },
        "grounded, library only": {"mode": "grounded", "params": {"generate": False}},
        "grounded + gated student": {"mode": "grounded", "params": {"generate": True, "fallback": "plain"}},
    }
    for label, prompting in configs.items():
        agent = Agent.from_pack(pack, student=student, prompting=prompting)
        result = run_suite(suite, agent, make_context(agent))
        cos = [
            c.score for t in result.turns for c in t.checks if c.kind == "similar_to" and c.score is not None
        ]
        refund = [not c.passed for t in result.turns for c in t.checks if c.kind == "not_matches"]
        rows[label] = {
            "cosine": np.array(cos),
            "refund": float(np.mean(refund)) if refund else 0.0,
            "ms_p50": result.summary()["turn_ms_p50"],
            "routes": result.summary()["routes"],
        }
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="student (default: the registry default)")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--paper-limit", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    args = ap.parse_args()
    t0 = time.perf_counter()
    shipped = Agent.from_pack(home_dir() / "packs" / "demo", args.model)  # one student for every run
    demo = run_demo("demo", shipped)
    holdout = run_demo("demo-holdout", shipped)
    misses: list[str] = []
    print(
        f"{'suite':<16} {'turns passed':>13} {'rate':>7} {'claims':>7} {'bad drafts':>10} {'rules':>6}  p50 ms by route"
    )
    for row in (demo, holdout):
        ms = ", ".join(f"{r} {v:.0f}" for r, v in sorted(row["ms_p50"].items()))
        print(
            f"{row['suite']:<16} {row['passed']:>6}/{row['turns']:<6} {100 * row['rate']:>6.1f}% {row['claims']:>7} "
            f"{row['gate_fail']:>10} {row['rules']:>6}  {ms}"
        )
    if demo["rate"] < TARGET_PASS:
        misses.append(f"demo pass rate {demo['rate']:.1%} < {TARGET_PASS:.0%}")
    for key, what in (
        ("claims", "replies claiming an unestablished fact"),
        ("gate_fail", "shown drafts failing the gate"),
        ("rules", "rule violations"),
    ):
        if demo[key] or holdout[key]:
            misses.append(f"{demo[key] + holdout[key]} {what}")
    for route in ("exemplar", "clarify"):
        ms = demo["ms_p50"].get(route)
        if ms is not None and ms > TARGET_MS:
            misses.append(f"{route} route p50 {ms:.0f} ms > {TARGET_MS:.0f}")
    report = {"demo": demo, "holdout": holdout}
    if not args.skip_paper:
        if not (PAPER / "library.jsonl").is_file():
            print(f"paper data not found at {PAPER}; run with --skip-paper", file=sys.stderr)
            return 2
        rows = run_paper(shipped.student, args.paper_limit)
        base = rows["adapt+rerank (before)"]["cosine"]
        print(
            f"\n{'paper-airline (held-out)':<28} {'mean cosine':>11} {'diff vs before [95% CI]':>28} {'refund':>7} {'p50 ms':>7}"
        )
        for label, row in rows.items():
            diff = "" if label.startswith("adapt") else str(paired_diff_ci(row["cosine"], base, resamples=2000))
            print(
                f"{label:<28} {row['cosine'].mean():>11.3f} {diff:>28} {100 * row['refund']:>6.1f}% {row['ms_p50']:>7.0f}"
            )
        shipped = rows["grounded, library only"]
        hi = paired_diff_ci(shipped["cosine"], base, resamples=2000).high
        if hi < 0:
            misses.append(f"paper cosine lower than before beyond noise (CI upper {hi:+.3f})")
        if shipped["refund"] > TARGET_REFUND:
            misses.append(f"paper refund promises {shipped['refund']:.1%} > {TARGET_REFUND:.1%}")
        report["paper"] = {
            k: {**v, "cosine": float(v["cosine"].mean()), "n": int(len(v["cosine"]))} for k, v in rows.items()
        }
    print(
        f"\n{time.perf_counter() - t0:.0f} s; "
        + ("ALL TARGETS MET" if not misses else "MISSED: " + "; ".join(misses))
    )
    out = args.out or home_dir() / "reports" / "bench-conversations.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
