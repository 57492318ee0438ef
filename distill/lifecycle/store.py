"""Open and save strategy libraries, and the pure edits people make to them.

A *source* is a library JSONL file, a directory holding `library.jsonl`, or a built pack (read
only: packs are rebuilt, never edited in place). Edits keep ids stable and append a `Review` so
every change says who made it and when. No embedding happens here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.library import SOURCES, STATUSES, Review, Strategy, read_library, strategy_id, write_library
from edge_agent.pack import MANIFEST, Pack, load_pack

__all__ = [
    "EDITABLE_FIELDS",
    "Library",
    "add_strategy",
    "edit_strategy",
    "find_strategy",
    "import_strategies",
    "open_library",
    "remove_strategies",
    "save_library",
    "utc_now",
]

LIBRARY_FILE = "library.jsonl"
EDITABLE_FIELDS = ("scenario", "strategy", "compact", "exemplar")


def utc_now() -> str:
    """The review timestamp format: ISO-8601 UTC, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Library:
    """Strategies read from a library file or a pack; `pack` is set for packs."""

    path: Path
    strategies: list[Strategy]
    pack: Pack | None = None

    @property
    def is_pack(self) -> bool:
        return self.pack is not None

    @property
    def name(self) -> str:
        return self.path.name


def is_pack_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def library_file(path: Path) -> Path:
    """The JSONL file behind a library path (a file, or a directory holding library.jsonl)."""
    path = Path(path)
    if path.is_dir():
        return path / LIBRARY_FILE
    return path


def open_library(path: Path | str, *, verify_hashes: bool = True) -> Library:
    """Read a library file, a library directory or a pack (FAISS is not needed to read one)."""
    path = Path(path)
    if is_pack_dir(path):
        pack = load_pack(path, verify_hashes=verify_hashes, use_faiss=False)
        return Library(path=path, strategies=list(pack.strategies), pack=pack)
    if not path.exists():
        raise ConfigError(f"{path} not found; pass a library .jsonl file, a directory with {LIBRARY_FILE} "
                          "or a pack directory")
    return Library(path=library_file(path), strategies=read_library(library_file(path)))


def save_library(library: Library, strategies: Sequence[Strategy]) -> Path:
    """Write strategies back to the library file; packs are refused (rebuild them instead)."""
    if library.is_pack:
        raise ConfigError(f"{library.path} is a pack, which is built output; copy its strategies out with "
                          f"'edge-agent library export {library.path} --format jsonl -o lib.jsonl', edit "
                          "that, then 'edge-agent pack rebuild --library lib.jsonl'")
    write_library(library.path, strategies)
    library.strategies = list(strategies)
    return library.path


def find_strategy(strategies: Sequence[Strategy], ident: str) -> int:
    """Index of the strategy with id `ident`, or with a unique id starting with it (like git)."""
    for i, item in enumerate(strategies):
        if item.id == ident:
            return i
    matches = [i for i, item in enumerate(strategies) if item.id.startswith(ident)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        some = ", ".join(strategies[i].id for i in matches[:5])
        raise ConfigError(f"id {ident!r} is ambiguous ({some}...); give more characters")
    raise ConfigError(f"no strategy with id {ident!r}; list ids with: edge-agent library show LIBRARY")


def _check_choice(name: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not valid; use one of {', '.join(allowed)}")


def add_strategy(
    strategies: Sequence[Strategy],
    *,
    scenario: str,
    strategy: str,
    author: str,
    at: str,
    compact: str = "",
    exemplar: str = "",
    tags: Sequence[str] = (),
    status: str = "pending",
    ident: str | None = None,
    note: str = "",
) -> tuple[list[Strategy], Strategy]:
    """Append a hand-written strategy (source 'authored'); its id derives from the scenario."""
    _check_choice("status", status, STATUSES)
    if not scenario.strip() or not strategy.strip():
        raise ConfigError("a strategy needs a non-empty scenario and strategy text")
    new_id = ident or strategy_id(scenario)
    if any(s.id == new_id for s in strategies):
        raise ConfigError(f"id {new_id!r} already exists (same scenario?); edit it with: "
                          f"edge-agent library edit LIBRARY {new_id}, or pass --id")
    decision = "approved" if status == "approved" else "pending"
    item = Strategy(
        id=new_id, scenario=scenario.strip(), strategy=strategy.strip(), compact=compact.strip(),
        exemplar=exemplar.strip(), source="authored", status=status, tags=tuple(tags),
        provenance={"author": author, "created_at": at},
        reviews=(Review(reviewer=author, at=at, decision=decision, note=note or "authored"),),
    )
    return [*strategies, item], item


def edit_strategy(
    strategies: Sequence[Strategy],
    ident: str,
    changes: Mapping[str, Any],
    *,
    reviewer: str,
    at: str,
    note: str = "",
    status: str | None = None,
) -> tuple[list[Strategy], Strategy]:
    """Change text fields (and optionally the status) of one strategy; the id never changes.

    Returns the strategies unchanged (and no new review) when nothing actually differs.
    """
    unknown = sorted(set(changes) - {*EDITABLE_FIELDS, "tags"})
    if unknown:
        raise ConfigError(f"cannot edit {', '.join(unknown)}; editable: {', '.join((*EDITABLE_FIELDS, 'tags'))}")
    if status is not None:
        _check_choice("status", status, STATUSES)
    i = find_strategy(strategies, ident)
    old = strategies[i]
    values: dict[str, Any] = {}
    for key, value in changes.items():
        value = tuple(value) if key == "tags" else str(value).strip()
        if value != getattr(old, key):
            values[key] = value
    for key in ("scenario", "strategy"):
        if key in values and not values[key]:
            raise ConfigError(f"the {key} cannot be empty; remove the strategy instead")
    if status is not None and status != old.status:
        values["status"] = status
    if not values:
        return list(strategies), old
    fields = ", ".join(sorted(k for k in values if k != "status")) or "status"
    review = Review(reviewer=reviewer, at=at, decision="edited", note=note or f"edited {fields}")
    new = old.replace(**values, reviews=(*old.reviews, review))
    out = list(strategies)
    out[i] = new
    return out, new


def remove_strategies(strategies: Sequence[Strategy], idents: Sequence[str]) -> tuple[list[Strategy], list[Strategy]]:
    """Drop strategies by id (or unique id prefix); returns (kept, removed)."""
    drop = {strategies[find_strategy(strategies, ident)].id for ident in idents}
    kept = [s for s in strategies if s.id not in drop]
    return kept, [s for s in strategies if s.id in drop]


def import_strategies(
    strategies: Sequence[Strategy], incoming: Sequence[Strategy], *, origin: str, who: str, at: str,
) -> tuple[list[Strategy], list[Strategy]]:
    """Add strategies from another library as source 'imported', pending review; same ids are skipped."""
    have = {s.id for s in strategies}
    added: list[Strategy] = []
    for item in incoming:
        if item.id in have:
            continue
        provenance = {**dict(item.provenance), "imported_from": origin, "imported_at": at,
                      "original_source": item.source}
        added.append(item.replace(
            source="imported", status="pending", provenance=provenance,
            reviews=(*item.reviews, Review(reviewer=who, at=at, decision="pending", note=f"imported from {origin}")),
        ))
        have.add(item.id)
    return [*strategies, *added], added


def counts(strategies: Sequence[Strategy]) -> dict[str, int]:
    """How many strategies have each status and each source."""
    out = {k: 0 for k in (*STATUSES, *SOURCES)}
    for s in strategies:
        out[s.status] += 1
        out[s.source] += 1
    return out
