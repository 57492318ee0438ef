"""Strategy records and the human-readable library file (JSONL, one strategy per line).

A strategy pairs a *scenario* (the conversation situation it was written for) with guidance for
the agent's next reply. This module only models and (de)serialises records; it does no embedding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .errors import PackError

__all__ = [
    "text_lines",
    "Strategy",
    "Review",
    "SOURCES",
    "STATUSES",
    "strategy_id",
    "read_library",
    "write_library",
    "parse_strategy_line",
]

SOURCES = ("distilled", "authored", "imported")
STATUSES = ("pending", "approved", "rejected")


@dataclass(frozen=True)
class Review:
    """One review decision on a strategy."""

    reviewer: str
    at: str  # ISO-8601 UTC timestamp
    decision: str  # approved | rejected | edited | pending
    note: str = ""


@dataclass(frozen=True)
class Strategy:
    """One (scenario, strategy) pair with the forms a student may be shown.

    `strategy` is the full guidance; `compact` a few imperative sentences for small students;
    `exemplar` the teacher's reply in this scenario. `provenance` holds run id, stage, teacher and
    student ids, per-round scores and timestamps, as plain JSON values.
    """

    id: str
    scenario: str
    strategy: str
    compact: str = ""
    exemplar: str = ""
    source: str = "authored"
    status: str = "approved"
    tags: tuple[str, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    reviews: tuple[Review, ...] = ()
    # Facts the exemplar assumes ("outage_confirmed", or "!within_minimum_term" for one that must be
    # false) and facts the reply itself establishes once said. See edge_agent/facts.py.
    requires: tuple[str, ...] = ()
    establishes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tags"] = list(self.tags)
        for name in ("requires", "establishes"):  # omitted when empty: older files stay byte-identical
            if data[name]:
                data[name] = list(data[name])
            else:
                del data[name]
        data["provenance"] = dict(self.provenance)
        data["reviews"] = [dataclasses.asdict(r) for r in self.reviews]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Strategy":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        for name in ("id", "scenario", "strategy"):
            if not isinstance(data.get(name), str) or not data.get(name, "").strip():
                raise ValueError(f"field '{name}' must be a non-empty string")
        source = data.get("source", "authored")
        if source not in SOURCES:
            raise ValueError(f"field 'source' is {source!r}; use one of {', '.join(SOURCES)}")
        status = data.get("status", "approved")
        if status not in STATUSES:
            raise ValueError(f"field 'status' is {status!r}; use one of {', '.join(STATUSES)}")
        reviews = tuple(Review(**r) for r in data.get("reviews", ()))
        conditions = {}
        for name in ("requires", "establishes"):
            value = data.get(name, ())
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"field '{name}' must be a list of fact names (e.g. [\"identity_verified\"])")
            conditions[name] = tuple(v.strip() for v in value)
        return cls(
            id=data["id"],
            scenario=data["scenario"],
            strategy=data["strategy"],
            compact=str(data.get("compact", "") or ""),
            exemplar=str(data.get("exemplar", "") or ""),
            source=source,
            status=status,
            tags=tuple(data.get("tags", ())),
            provenance=dict(data.get("provenance", {})),
            reviews=reviews,
            **conditions,
        )

    def replace(self, **changes: Any) -> "Strategy":
        return dataclasses.replace(self, **changes)

    def content_hash(self) -> str:
        """Hash of the text that is embedded (the scenario): unchanged hash, reusable vector."""
        return hashlib.sha256(self.scenario.encode("utf-8")).hexdigest()


def strategy_id(scenario: str, prefix: str = "s") -> str:
    """A stable id derived from the scenario text (same text, same id)."""
    digest = hashlib.sha256(scenario.strip().encode("utf-8")).hexdigest()[:10]
    return f"{prefix}-{digest}"


def parse_strategy_line(line: str, where: str) -> Strategy:
    """Parse one JSONL line; `where` ("file.jsonl line 3") goes into the error."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PackError(
            f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); fix or remove that line"
        ) from None
    except RecursionError:
        raise PackError(f"{where}: JSON nested too deeply; a strategy is one flat object per line") from None
    if not isinstance(data, dict):
        raise PackError(f"{where}: expected a JSON object per line; fix or remove that line")
    try:
        return Strategy.from_json(data)
    except (ValueError, TypeError) as exc:
        raise PackError(f"{where}: {exc}; fix that line") from None


def text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file; a binary or mis-encoded file is a PackError saying where."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise PackError(f"{path}: not UTF-8 text (undecodable byte at line {line}); {what}") from None
    if "\x00" in text:
        raise PackError(f"{path}: holds NUL bytes, so it is binary, not text; {what}")
    return text.splitlines(keepends=True)


def read_library(path: Path) -> list[Strategy]:
    """Read a library JSONL file; blank lines are skipped, ids must be unique."""
    path = Path(path)
    if not path.is_file():
        raise PackError(f"library file {path} not found; pass the path to a strategies .jsonl file")
    out: list[Strategy] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text_lines(path, "a library is a UTF-8 .jsonl file of strategies"), 1):
        if not line.strip():
            continue
        item = parse_strategy_line(line, f"{path.name} line {lineno}")
        if item.id in seen:
            raise PackError(f"{path.name} line {lineno}: duplicate id {item.id!r}; ids must be unique")
        seen.add(item.id)
        out.append(item)
    return out


def write_library(path: Path, strategies: Iterable[Strategy]) -> None:
    """Write strategies as JSONL (sorted keys, UTF-8) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for item in strategies:
            fh.write(json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def iter_text(strategies: Iterable[Strategy]) -> Iterator[str]:
    for item in strategies:
        yield item.scenario
