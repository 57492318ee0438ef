"""Customers and scenarios as plain data: the persona grid crossed with situations, and prefix cuts.

A *customer* is a persona (one cell of the domain's persona grid) with a situation (a domain
intent or a generated one). A *scenario* is a conversation cut right after customer turn i.
Everything is deterministic given the seed; nothing here calls a model.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.conversation import render_transcript
from edge_agent.domain import Domain, persona_grid
from edge_agent.errors import ConfigError
from edge_agent.library import strategy_id

__all__ = ["Customer", "Scenario", "cap_customers", "cut_scenarios", "domain_situations", "make_customers",
           "sample_scenarios"]


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True)
class Customer:
    id: str
    persona: Mapping[str, Any]
    situation: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "persona": dict(self.persona), "situation": dict(self.situation)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Customer:
        return cls(id=data["id"], persona=dict(data["persona"]), situation=dict(data["situation"]))


@dataclass(frozen=True)
class Scenario:
    """A conversation prefix ending with a customer message; `id` is the strategy id it yields."""

    id: str
    stage: int
    customer_id: str
    turn: int
    history: tuple[Mapping[str, str], ...] = field(default_factory=tuple)

    @property
    def transcript(self) -> str:
        return render_transcript(self.history)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "stage": self.stage, "customer_id": self.customer_id, "turn": self.turn,
                "history": [dict(m) for m in self.history]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scenario:
        return cls(id=data["id"], stage=int(data["stage"]), customer_id=data["customer_id"],
                   turn=int(data["turn"]), history=tuple(dict(m) for m in data["history"]))


def domain_situations(domain: Domain, intents: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The domain's intents as situations; `intents` keeps only those ids (unknown ids are an error)."""
    if not domain.intents:
        raise ConfigError(f"domain {domain.name!r} lists no [[intents]]; add at least one customer problem")
    chosen = list(domain.intents)
    if intents:
        known = [i.id for i in domain.intents]
        unknown = [x for x in intents if x not in known]
        if unknown:
            raise ConfigError(f"unknown intent(s) {', '.join(unknown)} in --intents ([distill] intents); "
                              f"{domain.name} has: {', '.join(known)}")
        chosen = [i for i in domain.intents if i.id in set(intents)]
    return [{"id": i.id, "description": i.description, "customer_goal": i.customer_goal,
             "opening": i.opening, "source": "domain"} for i in chosen]


def cap_customers(customers: Sequence[Customer], limit: int | None, seed: int) -> list[Customer]:
    """At most `limit` customers, spread over situations: one from each (in a seeded order), then again.

    The order depends only on the seed and the ids, so a stage's domain customers stay the same
    when generated situations join later stages.
    """
    if limit is None or limit >= len(customers):
        return list(customers)
    groups: dict[str, list[Customer]] = {}
    for c in customers:
        groups.setdefault(str(c.situation.get("id", "")), []).append(c)
    order = sorted(groups, key=lambda sid: _digest({"seed": seed, "situation": sid}))
    out: list[Customer] = []
    for depth in range(max(len(g) for g in groups.values())):
        for sid in order:
            if depth < len(groups[sid]) and len(out) < limit:
                out.append(groups[sid][depth])
    return out


def make_customers(domain: Domain, situations: Sequence[Mapping[str, Any]], *, personas: int | None,
                   seed: int, limit: int | None = None) -> list[Customer]:
    """Each situation crossed with the persona grid (or a seeded sample of `personas` cells of it).

    `limit` caps the total (see `cap_customers`)."""
    grid = persona_grid(domain) or [{}]
    out: list[Customer] = []
    for situation in situations:
        cells = list(grid)
        if personas is not None and personas < len(cells):
            rng = random.Random(f"{seed}:personas:{situation['id']}")
            cells = rng.sample(cells, personas)
        for persona in cells:
            cid = f"c-{_digest({'persona': persona, 'situation': dict(situation)})}"
            out.append(Customer(id=cid, persona=persona, situation=dict(situation)))
    return cap_customers(out, limit, seed)


def cut_scenarios(messages: Sequence[Mapping[str, str]], cuts: Sequence[int], *, stage: int,
                  customer_id: str) -> list[Scenario]:
    """Prefixes that end right after customer turn i, for each i in `cuts` the conversation reaches."""
    out: list[Scenario] = []
    seen = 0
    wanted = set(cuts)
    for end, m in enumerate(messages):
        if m.get("role") != "user":
            continue
        seen += 1
        if seen in wanted:
            prefix = tuple({"role": x["role"], "content": x["content"]} for x in messages[: end + 1])
            out.append(Scenario(id=strategy_id(render_transcript(prefix), "d"), stage=stage,
                                customer_id=customer_id, turn=seen, history=prefix))
    return out


def sample_scenarios(scenarios: Sequence[Scenario], limit: int | None, seed: int, stage: int) -> list[Scenario]:
    """Drop exact duplicates, order by id, and keep a seeded sample of at most `limit`."""
    unique = {s.id: s for s in sorted(scenarios, key=lambda s: (s.id, s.customer_id))}
    ordered = sorted(unique.values(), key=lambda s: s.id)
    if limit is None or limit >= len(ordered):
        return ordered
    rng = random.Random(f"{seed}:scenarios:{stage}")
    return sorted(rng.sample(ordered, limit), key=lambda s: s.id)
