"""Plain records of an evaluation: cases, turns, conversations, and the replay recording file.

A recording is JSONL: one header line, then one reference conversation per case (customer turns
plus the reference agent's replies). Replaying it needs no simulator and no network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.errors import ConfigError

__all__ = [
    "RECORDING_FORMAT",
    "Case",
    "Conversation",
    "Recording",
    "Turn",
    "read_recording",
    "write_recording",
]

RECORDING_FORMAT = "edge-agent-eval-recording"
RECORDING_VERSION = 1


@dataclass(frozen=True)
class Case:
    """One simulated customer: a persona from the grid, an intent from the domain, a trial number."""

    persona: Mapping[str, Any]
    intent: str
    intent_description: str = ""
    customer_goal: str = ""
    opening: str = ""
    trial: int = 0
    seed: int = 0

    @property
    def persona_key(self) -> str:
        return "/".join(f"{k}={self.persona[k]}" for k in sorted(self.persona))

    @property
    def id(self) -> str:
        """Stable across trials, so trials of one case can be grouped (pass^k)."""
        return f"{self.intent}|{self.persona_key}"

    @property
    def key(self) -> str:
        return f"{self.id}#{self.trial}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "persona": dict(self.persona)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Case:
        try:
            return cls(**{**dict(data), "persona": dict(data["persona"])})
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"bad case record ({exc}); re-record the conversations") from None


@dataclass
class Turn:
    """One agent turn: what the customer said, the reply, and everything measured about it."""

    customer: str
    reply: str
    reference: str | None = None
    strategies: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    similarity: float | None = None
    closeness: int | None = None
    violations: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Turn:
        return cls(**dict(data))


@dataclass
class Conversation:
    """One condition's conversation with one case, plus its whole-conversation judgement."""

    condition: str
    case: Case
    turns: list[Turn] = field(default_factory=list)
    judge_score: int | None = None
    judge_reason: str = ""
    missing_steps: list[str] = field(default_factory=list)
    error: str = ""

    def messages(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for t in self.turns:
            out += [{"role": "user", "content": t.customer}, {"role": "assistant", "content": t.reply}]
        return out

    @property
    def violation_count(self) -> int:
        return sum(len(t.violations) for t in self.turns) + len(self.missing_steps)

    def to_json(self) -> dict[str, Any]:
        return {"condition": self.condition, "case": self.case.to_json(), "turns": [t.to_json() for t in self.turns],
                "judge_score": self.judge_score, "judge_reason": self.judge_reason,
                "missing_steps": list(self.missing_steps), "error": self.error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Conversation:
        return cls(condition=data["condition"], case=Case.from_json(data["case"]),
                   turns=[Turn.from_json(t) for t in data.get("turns", [])], judge_score=data.get("judge_score"),
                   judge_reason=data.get("judge_reason", ""), missing_steps=list(data.get("missing_steps", [])),
                   error=data.get("error", ""))


@dataclass(frozen=True)
class Recording:
    """Reference conversations to replay: header metadata and one conversation per case."""

    meta: Mapping[str, Any]
    conversations: list[Conversation]

    def customer_turns(self) -> dict[str, list[str]]:
        return {c.case.key: [t.customer for t in c.turns] for c in self.conversations}


def write_recording(path: Path | str, conversations: Iterable[Conversation], meta: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"format": RECORDING_FORMAT, "version": RECORDING_VERSION, **dict(meta)},
                            ensure_ascii=False) + "\n")
        for conv in conversations:
            row = {"case": conv.case.to_json(),
                   "turns": [{"customer": t.customer, "reply": t.reply} for t in conv.turns]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_recording(path: Path | str) -> Recording:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recording {path} not found; make one with: edge-agent eval run --record {path}")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    try:
        rows = [json.loads(ln) for ln in lines]
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name}: not JSONL ({exc}); re-record it with eval run --record") from None
    if not rows or rows[0].get("format") != RECORDING_FORMAT:
        raise ConfigError(f"{path.name}: not an evaluation recording (no '{RECORDING_FORMAT}' header line)")
    if rows[0].get("version") != RECORDING_VERSION:
        raise ConfigError(f"{path.name}: recording version {rows[0].get('version')} is not supported "
                          f"(expected {RECORDING_VERSION}); re-record it")
    meta = {k: v for k, v in rows[0].items() if k not in ("format", "version")}
    convs = []
    for i, row in enumerate(rows[1:], start=2):
        turns = row.get("turns")
        if "case" not in row or not isinstance(turns, list) or not turns:
            raise ConfigError(f"{path.name} line {i}: needs 'case' and a non-empty 'turns' list")
        convs.append(Conversation(condition="reference", case=Case.from_json(row["case"]),
                                  turns=[Turn(customer=str(t["customer"]), reply=str(t.get("reply", "")))
                                         for t in turns]))
    return Recording(meta=meta, conversations=convs)
