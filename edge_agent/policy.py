"""A checkable policy rule (`PolicyRule`): the one data type every check on replies and libraries shares.

A leaf: the domain loader, the pack, the gate, the planner, lint and the conversation tests import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PolicyRule"]


@dataclass(frozen=True)
class PolicyRule:
    """A checkable policy rule: a regex that must not (forbidden_*) or must (required_step) match.

    `examples` are sentences that break a forbidden rule and `compliant` near misses that do not;
    `edge_agent.rulecheck` uses them to catch rewordings the regex misses.
    """

    id: str
    kind: str
    pattern: str
    description: str = ""
    severity: str = "error"
    examples: tuple[str, ...] = ()
    compliant: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # manifests store lists; keep the frozen rule hashable
        object.__setattr__(self, "examples", tuple(self.examples or ()))
        object.__setattr__(self, "compliant", tuple(self.compliant or ()))

    def matches(self, text: str) -> bool:
        return re.search(self.pattern, text, flags=re.IGNORECASE) is not None
