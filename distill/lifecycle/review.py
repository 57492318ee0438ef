"""Human review of strategies: decisions from a file, the interactive walk, and the editor text.

`apply_decision` is the pure core (status + appended `Review`). The interactive walk takes its
terminal I/O as callables so tests drive it without a terminal; the CLI passes click's.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.keys import check_keys
from edge_agent.library import Review, Strategy

from .store import EDITABLE_FIELDS, find_strategy

__all__ = [
    "Decision",
    "apply_decision",
    "apply_decisions",
    "editable_text",
    "parse_editable_text",
    "read_decisions",
    "review_interactive",
]

# decision word in a file or at the prompt -> (new status, Review.decision)
DECISIONS = {
    "approve": ("approved", "approved"),
    "approved": ("approved", "approved"),
    "reject": ("rejected", "rejected"),
    "rejected": ("rejected", "rejected"),
    "pending": ("pending", "pending"),
    "edit": ("approved", "edited"),
    "edited": ("approved", "edited"),
}
_DECISION_KEYS = {"id", "decision", "note", "reviewer", *EDITABLE_FIELDS}


@dataclass(frozen=True)
class Decision:
    """One review decision; `edits` replaces text fields (an edit approves the edited strategy)."""

    id: str
    decision: str
    note: str = ""
    reviewer: str | None = None
    edits: Mapping[str, str] | None = None


def apply_decision(strategy: Strategy, decision: Decision, *, reviewer: str, at: str) -> Strategy:
    """The strategy after a decision: new status, edited text, one more review record."""
    word = decision.decision.strip().lower()
    if word not in DECISIONS:
        raise ConfigError(f"decision {decision.decision!r} for {strategy.id} is not valid; use approve, "
                          "reject, edit or pending")
    status, recorded = DECISIONS[word]
    edits = {k: v.strip() for k, v in (decision.edits or {}).items() if v.strip() != getattr(strategy, k)}
    if recorded == "edited" and not edits:
        recorded = "approved"
    elif edits and recorded == "approved":
        recorded = "edited"
    for key in ("scenario", "strategy"):
        if key in edits and not edits[key]:
            raise ConfigError(f"edit of {strategy.id} leaves the {key} empty; reject the strategy instead")
    review = Review(reviewer=decision.reviewer or reviewer, at=at, decision=recorded, note=decision.note)
    return strategy.replace(**edits, status=status, reviews=(*strategy.reviews, review))


def apply_decisions(
    strategies: Sequence[Strategy], decisions: Sequence[Decision], *, reviewer: str, at: str,
) -> tuple[list[Strategy], list[Strategy]]:
    """Apply every decision (ids or unique id prefixes); returns (all strategies, the changed ones)."""
    out = list(strategies)
    changed: list[Strategy] = []
    for decision in decisions:
        i = find_strategy(out, decision.id)
        out[i] = apply_decision(out[i], decision, reviewer=reviewer, at=at)
        changed.append(out[i])
    return out, changed


def parse_decisions(data: Any, where: str) -> tuple[list[Decision], str | None]:
    """Decisions from parsed JSON/TOML: {"reviewer"?, "decisions": [...]}, a list, or {id: decision}."""
    reviewer = None
    if isinstance(data, Mapping) and "decisions" in data:
        reviewer = data.get("reviewer")
        rows = data["decisions"]
    elif isinstance(data, Mapping):
        rows = [{"id": k, "decision": v} if isinstance(v, str) else {"id": k, **v} for k, v in data.items()]
    else:
        rows = data
    if not isinstance(rows, list):
        raise ConfigError(f"{where}: expected a list of decisions; see docs/library.md for the format")
    out: list[Decision] = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, Mapping) or not isinstance(row.get("id"), str) or not isinstance(
                row.get("decision"), str):
            raise ConfigError(f"{where}: decision #{n} needs string 'id' and 'decision' fields")
        check_keys(row, _DECISION_KEYS, f"{where}: decision #{n}")
        edits = {k: str(row[k]) for k in EDITABLE_FIELDS if k in row}
        out.append(Decision(id=row["id"], decision=row["decision"], note=str(row.get("note", "")),
                            reviewer=row.get("reviewer"), edits=edits or None))
    return out, reviewer


def read_decisions(path: Path) -> tuple[list[Decision], str | None]:
    """Read a decisions file (.json or .toml); returns (decisions, reviewer named in the file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"decisions file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path.name}: cannot parse ({exc}); fix the file") from None
    return parse_decisions(data, path.name)


_HEADER = re.compile(r"^=== (\w+) ===\s*$")


def editable_text(strategy: Strategy) -> str:
    """The text a reviewer edits in $EDITOR: one '=== field ===' section per editable field."""
    lines = [f"# Editing strategy {strategy.id}. Change the text under each header; keep the headers.",
             "# Lines starting with '#' are ignored. Save and close to apply; empty the file to cancel."]
    for key in EDITABLE_FIELDS:
        lines += [f"=== {key} ===", getattr(strategy, key), ""]
    return "\n".join(lines)


def parse_editable_text(text: str) -> dict[str, str] | None:
    """Fields from edited text; None when the file was emptied (cancel)."""
    body = [line for line in text.splitlines() if not line.startswith("#")]
    if not any(line.strip() for line in body):
        return None
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in body:
        match = _HEADER.match(line)
        if match:
            current = match.group(1)
            if current not in EDITABLE_FIELDS:
                raise ConfigError(f"unknown section '=== {current} ==='; keep the sections "
                                  f"{', '.join(EDITABLE_FIELDS)}")
            out[current] = []
        elif current is not None:
            out[current].append(line)
        elif line.strip():
            raise ConfigError("text before the first '=== field ===' header; keep the headers")
    return {k: "\n".join(v).strip() for k, v in out.items()}


Ask = Callable[[Strategy, int, int], str]  # -> one of a, e, r, s, q
Edit = Callable[[str], str | None]  # editor text in, edited text out (None: unchanged/cancelled)


def review_interactive(
    strategies: Sequence[Strategy],
    *,
    ask: Ask,
    edit: Edit,
    note: Callable[[str], str],
    reviewer: str,
    now: Callable[[], str],
    statuses: Sequence[str] = ("pending",),
    save: Callable[[list[Strategy]], Any] | None = None,
) -> tuple[list[Strategy], list[Strategy]]:
    """Walk strategies with the given statuses: approve, edit, reject, skip or quit.

    `ask` shows a strategy and returns the key pressed; `note` asks for an optional note for a
    rejection; `save` is called after every decision so an interrupted walk loses nothing.
    Returns (all strategies, the ones decided).
    """
    out = list(strategies)
    decided: list[Strategy] = []
    todo = [s.id for s in out if s.status in statuses]
    for n, ident in enumerate(todo, 1):
        i = find_strategy(out, ident)
        key = ask(out[i], n, len(todo))
        if key == "q":
            break
        if key == "s":
            continue
        if key == "a":
            decision = Decision(id=ident, decision="approve")
        elif key == "r":
            decision = Decision(id=ident, decision="reject", note=note("reason for rejecting"))
        elif key == "e":
            edited = edit(editable_text(out[i]))
            fields = parse_editable_text(edited) if edited is not None else None
            if fields is None:
                continue
            decision = Decision(id=ident, decision="edit", edits=fields)
        else:
            raise ConfigError(f"unknown review key {key!r}; use a, e, r, s or q")
        out[i] = apply_decision(out[i], decision, reviewer=reviewer, at=now())
        decided.append(out[i])
        if save is not None:
            save(out)
    return out, decided
