"""Before a run: expected and worst-case calls, tokens and cost per role, from the settings alone.

Pure arithmetic over the domain and settings; token counts use ~4 characters per token. The
"expected" column assumes conversations of at most 4 customer turns and 2.5 improvement rounds;
the "max" column assumes every conversation hits the turn cap and every scenario all rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_agent.domain import Domain, persona_grid

from ..config import ROLES, BudgetSettings, RunSettings
from ..roles.budget import cost_of
from .scenarios import domain_situations

__all__ = ["RoleEstimate", "budget_warnings", "estimate_run", "format_estimate"]

_TURN_TOKENS = 60  # one customer or agent message
_EXPECTED_TURNS = 4
_EXPECTED_ROUNDS = 2.5


@dataclass
class RoleEstimate:
    role: str
    model: str
    calls: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    cost: float = 0.0

    def add(self, calls: float, prompt: float, completion: float) -> None:
        self.calls += calls
        self.prompt_tokens += calls * prompt
        self.completion_tokens += calls * completion

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "model": self.model, "calls": round(self.calls),
                "prompt_tokens": round(self.prompt_tokens), "completion_tokens": round(self.completion_tokens),
                "cost": round(self.cost, 4)}


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def estimate_run(domain: Domain, settings: RunSettings, worst_case: bool = False) -> list[RoleEstimate]:
    loop = settings.loop
    eps = {r: settings.endpoint(r) for r in ROLES}
    rows = {r: RoleEstimate(r, eps[r].model) for r in ROLES}
    grid = max(1, len(persona_grid(domain)))
    personas = min(grid, loop.personas) if loop.personas else grid
    turns = loop.max_customer_turns if worst_case else min(loop.max_customer_turns, _EXPECTED_TURNS)
    rounds = loop.rounds if worst_case else min(float(loop.rounds), _EXPECTED_ROUNDS)
    system = _tokens(domain.system_prompt(full=True))
    policy = _tokens(domain.policy)
    conv = turns * 2 * _TURN_TOKENS
    share = 1.0 if worst_case else 0.6
    intents = len(domain_situations(domain, loop.intents))
    for stage, p in enumerate(loop.stages):
        situations = intents + (loop.generate_per_stage if stage else 0)
        customers = situations * personas
        if loop.max_customers:
            customers = min(customers, loop.max_customers)
        rows["customer"].add(customers * turns, 250 + conv / 2, eps["customer"].max_tokens * share)
        rows["teacher"].add(customers * turns * p, system + conv / 2, eps["teacher"].max_tokens * share)
        cuts = sum(1 for c in loop.cut_turns if c <= turns)
        scenarios = customers * cuts
        if loop.scenarios_per_stage:
            scenarios = min(scenarios, loop.scenarios_per_stage)
        writer_prompt = policy + conv / 2 + 2 * _TURN_TOKENS * 2 + 200
        rows["teacher"].add(scenarios, system + conv / 2, eps["teacher"].max_tokens * share)
        rows["writer"].add(scenarios * rounds, writer_prompt, eps["writer"].max_tokens * share)
        rows["merger"].add(scenarios * max(0.0, rounds - 1), conv / 2 + 2 * eps["writer"].max_tokens * share + 150,
                           eps["merger"].max_tokens * share)
        rows["judge"].add(scenarios * rounds, conv / 2 + 2 * _TURN_TOKENS * 2 + 120, eps["judge"].max_tokens * share)
        if stage < len(loop.stages) - 1 and loop.generate_per_stage:
            rows["generator"].add(1, policy + loop.worst_for_generation * conv / 2 + 300,
                                  eps["generator"].max_tokens * share)
    for row in rows.values():
        row.cost = cost_of(settings.prices, row.model, int(row.prompt_tokens), int(row.completion_tokens))
    return list(rows.values())


def format_estimate(expected: list[RoleEstimate], worst: list[RoleEstimate], priced: set[str]) -> str:
    head = f"{'role':10} {'model':22} {'calls':>8} {'max':>8} {'tokens':>11} {'max':>11} {'cost $':>9} {'max $':>9}"
    lines = [head, "-" * len(head)]
    for e, w in zip(expected, worst):
        money = (lambda x: f"{x:9.2f}") if e.model in priced else (lambda x: f"{'n/a':>9}")
        lines.append(f"{e.role:10} {e.model[:22]:22} {e.calls:8.0f} {w.calls:8.0f} "
                     f"{e.prompt_tokens + e.completion_tokens:11.0f} {w.prompt_tokens + w.completion_tokens:11.0f} "
                     f"{money(e.cost)} {money(w.cost)}")
    tot = [sum(getattr(r, k) for r in rows) for rows in (expected, worst) for k in ("calls", "cost")]
    toks = [sum(r.prompt_tokens + r.completion_tokens for r in rows) for rows in (expected, worst)]
    lines.append("-" * len(head))
    lines.append(f"{'total':33} {tot[0]:8.0f} {tot[2]:8.0f} {toks[0]:11.0f} {toks[1]:11.0f} {tot[1]:9.2f} {tot[3]:9.2f}")
    missing = sorted({e.model for e in expected} - priced)
    if missing:
        lines.append(f"no price for: {', '.join(missing)} (add [prices.\"MODEL\"] tables to the domain file)")
    return "\n".join(lines)


def budget_warnings(expected: list[RoleEstimate], worst: list[RoleEstimate], budget: BudgetSettings,
                    priced: set[str]) -> list[str]:
    """One line per `[budget]` limit the expected (or worst-case) run goes past."""
    out: list[str] = []
    checks = (("max_calls", "calls", lambda rows: sum(r.calls for r in rows), "{:.0f} calls"),
              ("max_tokens", "tokens", lambda rows: sum(r.prompt_tokens + r.completion_tokens for r in rows),
               "{:.0f} tokens"),
              ("max_cost", "cost", lambda rows: sum(r.cost for r in rows), "${:.2f}"))
    for key, _, total, fmt in checks:
        limit = getattr(budget, key)
        if limit is None or (key == "max_cost" and not priced & {r.model for r in expected}):
            continue
        exp, most = total(expected), total(worst)
        if exp > limit:
            out.append(f"warning: the expected run ({fmt.format(exp)}) exceeds the domain's [budget] {key} = "
                       f"{limit}; it will stop there (resume with a larger limit), or shrink it with --intents, "
                       "--customers, --personas or --stages")
        elif most > limit:
            out.append(f"note: the worst case ({fmt.format(most)}) exceeds [budget] {key} = {limit}; a long run "
                       "may stop there and need a resume with a larger limit")
    return out
