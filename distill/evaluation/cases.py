"""Which simulated customers an evaluation meets: persona grid x intents, seeded, with hold-out.

`case_split` assigns every (persona, intent) pair to "build" or "test" by a stable hash, so the
library can be built on one side and evaluated on the other without a shared file. Pure functions.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.domain import Domain, persona_grid
from edge_agent.errors import ConfigError

from .records import Case

__all__ = ["CaseSelection", "case_split", "persona_key", "select_cases"]


def persona_key(persona: Mapping[str, Any]) -> str:
    return "/".join(f"{k}={persona[k]}" for k in sorted(persona))


def case_split(persona: Mapping[str, Any], intent: str, test_share: float, salt: str = "") -> str:
    """'test' for a stable `test_share` of (persona, intent) pairs, else 'build'."""
    digest = hashlib.sha256(f"{salt}|{intent}|{persona_key(persona)}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_share else "build"


@dataclass(frozen=True)
class CaseSelection:
    """How to pick cases. `split` is 'all', 'test' or 'build' (see `case_split`)."""

    personas: int = 8
    intents: Collection[str] = ()  # empty = every intent of the domain
    exclude_personas: Collection[str] = ()  # persona keys (see `persona_key`) held out
    exclude_intents: Collection[str] = ()
    split: str = "all"
    test_share: float = 0.5
    split_salt: str = ""
    trials: int = 1
    seed: int = 0


def select_cases(domain: Domain, selection: CaseSelection) -> list[Case]:
    """A seeded sample of (persona, intent) pairs, each repeated `trials` times.

    Each persona gets one intent (cycling through the allowed intents in a seeded order), so a
    handful of cases still covers several problems.
    """
    if selection.split not in ("all", "test", "build"):
        raise ConfigError(f"split {selection.split!r} is not one of all, test, build")
    if selection.personas < 1 or selection.trials < 1:
        raise ConfigError("--personas and --trials must be at least 1")
    intents = [i for i in domain.intents if (not selection.intents or i.id in selection.intents)
               and i.id not in selection.exclude_intents]
    unknown = sorted(set(selection.intents) - {i.id for i in domain.intents})
    if unknown:
        raise ConfigError(f"unknown intent(s) {', '.join(unknown)}; the domain has: "
                          f"{', '.join(i.id for i in domain.intents)}")
    if not intents:
        raise ConfigError(f"{domain.source or 'the domain'}: no intents left to evaluate; add [[intents]] "
                          "or loosen --intent/--exclude-intent")
    rng = random.Random(selection.seed)
    grid = [p for p in (persona_grid(domain) or [{}]) if persona_key(p) not in selection.exclude_personas]
    rng.shuffle(grid)
    order = list(intents)
    rng.shuffle(order)
    pairs = []
    for n, persona in enumerate(grid):
        # Walk the intents from this persona's slot until one lands on the wanted side of the split.
        for step in range(len(order)):
            intent = order[(n + step) % len(order)]
            side = case_split(persona, intent.id, selection.test_share, selection.split_salt)
            if selection.split in ("all", side):
                pairs.append((persona, intent))
                break
        if len(pairs) >= selection.personas:
            break
    if not pairs:
        raise ConfigError(f"no cases on the '{selection.split}' side of the split; use --split all "
                          "or change --test-share")
    cases = []
    for trial in range(selection.trials):
        for persona, intent in pairs:
            seed = rng.randrange(2**31)
            cases.append(Case(persona=dict(persona), intent=intent.id, intent_description=intent.description,
                              customer_goal=intent.customer_goal, opening=intent.opening, trial=trial, seed=seed))
    return cases
