"""Compare two libraries (or packs) by strategy id: added, removed and changed strategies.

Per changed strategy it lists the fields that differ with a unified line diff and a word diff
(`[-old-]{+new+}`), so a reviewer sees exactly which sentence an edit touched.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.library import Strategy

__all__ = ["DIFF_FIELDS", "Changed", "FieldChange", "LibraryDiff", "diff_libraries", "word_diff"]

DIFF_FIELDS = ("scenario", "strategy", "compact", "exemplar", "status", "source", "tags", "provenance", "reviews")
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def field_text(strategy: Strategy, name: str) -> str:
    """A field as comparable text (lists and mappings rendered stably)."""
    value = getattr(strategy, name)
    if name == "tags":
        return ", ".join(value)
    if name == "provenance":
        return json.dumps(dict(value), indent=1, sort_keys=True, ensure_ascii=False) if value else ""
    if name == "reviews":
        return "\n".join(f"{r.at} {r.reviewer} {r.decision}" + (f": {r.note}" if r.note else "") for r in value)
    return str(value)


def word_diff(old: str, new: str) -> str:
    """Inline word diff: removed text as [-...-], added text as {+...+}."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append("".join(a[i1:i2]))
            continue
        if i2 > i1:
            out.append("[-" + "".join(a[i1:i2]) + "-]")
        if j2 > j1:
            out.append("{+" + "".join(b[j1:j2]) + "+}")
    return "".join(out)


def unified(old: str, new: str, name: str) -> list[str]:
    return [line.rstrip("\n") for line in difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"old/{name}", f"new/{name}", lineterm="")]


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str

    @property
    def words(self) -> str:
        return word_diff(self.old, self.new)

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new,
                "unified": unified(self.old, self.new, self.field), "words": self.words}


@dataclass(frozen=True)
class Changed:
    id: str
    changes: tuple[FieldChange, ...]

    @property
    def fields(self) -> list[str]:
        return [c.field for c in self.changes]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "fields": self.fields, "changes": [c.to_json() for c in self.changes]}


@dataclass(frozen=True)
class LibraryDiff:
    added: list[Strategy]
    removed: list[Strategy]
    changed: list[Changed]
    unchanged: int

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                        "unchanged": self.unchanged},
            "added": [s.to_json() for s in self.added],
            "removed": [s.to_json() for s in self.removed],
            "changed": [c.to_json() for c in self.changed],
        }


def diff_libraries(old: Sequence[Strategy], new: Sequence[Strategy],
                   fields: Sequence[str] = DIFF_FIELDS) -> LibraryDiff:
    """Match strategies by id and compare the given fields; order in each list follows NEW (or OLD)."""
    before = {s.id: s for s in old}
    after = {s.id: s for s in new}
    changed: list[Changed] = []
    unchanged = 0
    for s in new:
        if s.id not in before:
            continue
        changes = tuple(FieldChange(name, field_text(before[s.id], name), field_text(s, name))
                        for name in fields if field_text(before[s.id], name) != field_text(s, name))
        if changes:
            changed.append(Changed(id=s.id, changes=changes))
        else:
            unchanged += 1
    return LibraryDiff(
        added=[s for s in new if s.id not in before],
        removed=[s for s in old if s.id not in after],
        changed=changed,
        unchanged=unchanged,
    )


def render_diff(diff: LibraryDiff, *, old_name: str = "old", new_name: str = "new", width: int = 100) -> str:
    """The diff for people: a summary line, then each added, removed and changed strategy."""
    lines = [(f"{old_name} -> {new_name}: {len(diff.added)} added, {len(diff.removed)} removed, "
             f"{len(diff.changed)} changed, {diff.unchanged} unchanged")]
    for s in diff.added:
        lines.append(f"+ {s.id}  [{s.status}, {s.source}]  {_short(s.strategy, width)}")
    for s in diff.removed:
        lines.append(f"- {s.id}  [{s.status}, {s.source}]  {_short(s.strategy, width)}")
    for c in diff.changed:
        lines.append(f"~ {c.id}  ({', '.join(c.fields)})")
        for change in c.changes:
            if change.field in ("status", "source", "tags"):
                lines.append(f"    {change.field}: {change.old or '-'} -> {change.new or '-'}")
            elif change.field == "reviews":
                added = change.new.splitlines()[len(change.old.splitlines()):]
                lines += [f"    review: {r}" for r in added] or ["    reviews changed"]
            else:
                lines.append(f"    {change.field}:")
                lines += ["      " + part for part in change.words.splitlines()]
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
