"""Rollouts with a shifting driver: a simulated customer talks to the teacher or the student.

At each agent turn the teacher answers with probability p (this stage's value), else the student
with the library so far. The RNG is seeded per (seed, stage, customer), so results do not depend
on the order in which concurrent rollouts finish. A conversation ends when the customer signs
off with the end marker, sends nothing, or reaches the turn cap.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.domain import Domain

from ..config import LoopSettings
from ..roles.caller import Caller
from .prompts import customer_messages
from .scenarios import Customer
from .student_runner import StudentRunner

__all__ = ["Rollout", "agent_messages", "pick_driver", "rollout_rng", "run_rollout", "split_end"]

_LABEL = re.compile(r"^\s*(?:customer|client|me)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Rollout:
    customer_id: str
    stage: int
    p: float
    messages: tuple[Mapping[str, str], ...]
    drivers: tuple[str, ...] = field(default_factory=tuple)
    ended: str = "turn_cap"

    def to_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "stage": self.stage, "p": self.p,
                "messages": [dict(m) for m in self.messages], "drivers": list(self.drivers), "ended": self.ended}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollout:
        return cls(customer_id=data["customer_id"], stage=int(data["stage"]), p=float(data["p"]),
                   messages=tuple(dict(m) for m in data["messages"]), drivers=tuple(data["drivers"]),
                   ended=str(data["ended"]))


def rollout_rng(seed: int, stage: int, customer_id: str) -> random.Random:
    return random.Random(f"{seed}:rollout:{stage}:{customer_id}")


def pick_driver(rng: random.Random, p: float) -> str:
    """"teacher" with probability p, else "student" (p = 1 is always the teacher, p = 0 never)."""
    return "teacher" if rng.random() < p else "student"


def split_end(text: str, marker: str) -> tuple[str, bool]:
    """The customer's message without a leading speaker label or the end marker, and whether it ended."""
    clean = _LABEL.sub("", text.strip())
    ended = marker.lower() in clean.lower()
    if ended:
        clean = re.sub(re.escape(marker), "", clean, flags=re.IGNORECASE)
    return " ".join(clean.split()), ended


def agent_messages(domain: Domain, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """What the teacher sees as the agent: the system prompt with the full policy, and the history."""
    return [{"role": "system", "content": domain.system_prompt(full=True)},
            *({"role": m["role"], "content": m["content"]} for m in history)]


async def run_rollout(customer: Customer, *, stage: int, p: float, domain: Domain, caller: Caller,
                      student: StudentRunner, settings: LoopSettings) -> Rollout:
    rng = rollout_rng(settings.seed, stage, customer.id)
    history: list[dict[str, str]] = []
    drivers: list[str] = []
    ended = "turn_cap"
    for _ in range(settings.max_customer_turns):
        said = await caller.text("customer", customer_messages(domain, customer.to_json(), history,
                                                               settings.end_marker))
        text, left = split_end(said.text, settings.end_marker)
        if not text:
            ended = "customer_silent"
            break
        history.append({"role": "user", "content": text})
        if left:
            ended = "customer_left"
            break
        driver = pick_driver(rng, p)
        if driver == "teacher":
            reply = (await caller.text("teacher", agent_messages(domain, history))).text
        else:
            reply = await student.reply(history)
        history.append({"role": "assistant", "content": reply.strip() or "..."})
        drivers.append(driver)
    return Rollout(customer_id=customer.id, stage=stage, p=p, messages=tuple(history), drivers=tuple(drivers),
                   ended=ended)
