"""Conversation-test suites: TOML files of scripted customer lines with expectations per reply.

This module only parses and validates a suite into plain frozen data; running it is `runner`,
checking a reply is `checks`. Every mistake in a file is a `SuiteError` naming the conversation,
the turn, the field and the fix, so `edge-agent test` can exit 2 with one line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..keys import check_keys

__all__ = [
    "Conversation",
    "Expect",
    "Suite",
    "SuiteError",
    "Turn",
    "ASSERTIONS",
    "load_suite",
    "parse_suite",
    "select",
]


class SuiteError(ConfigError):
    """A suite file that cannot be run as written."""


# kind -> the Python type(s) its value may have in TOML. Lists of words may also be a single string.
ASSERTIONS: dict[str, str] = {
    "contains_any": "words",
    "contains_all": "words",
    "not_contains": "words",
    "matches": "words",
    "not_matches": "words",
    "rules": "bool",
    "strategy": "words",
    "not_strategy": "words",
    "route": "words",
    "not_route": "words",
    "similar_to": "str",
    "max_words": "int",
    "min_words": "int",
    "no_repeat": "bool",
    "language": "bool",
    "facts": "facts",
}
# Settings that tune an assertion rather than being one.
SETTINGS = {"similar_threshold": "float"}
DEFAULT_ON = {"rules": True, "no_repeat": True, "language": True}
DEFAULT_THRESHOLD = 0.6
_SUITE_KEYS = {"suite", "defaults", "conversations"}
_SUITE_TABLE = {"name", "description"}
_CONV_KEYS = {"id", "description", "tags", "turns", "history", "defaults"}
_TURN_KEYS = {"customer", "note", *ASSERTIONS, *SETTINGS}


@dataclass(frozen=True)
class Expect:
    """Every check a reply must pass: assertion kind -> value (already merged with the defaults)."""

    checks: Mapping[str, Any] = field(default_factory=dict)
    similar_threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Turn:
    customer: str
    expect: Expect
    note: str = ""


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: tuple[Turn, ...]
    tags: tuple[str, ...] = ()
    description: str = ""
    history: tuple[Mapping[str, str], ...] = ()  # given turns played before the first line, not checked


@dataclass(frozen=True)
class Suite:
    name: str
    conversations: tuple[Conversation, ...]
    description: str = ""
    source: str = ""

    @property
    def turn_count(self) -> int:
        return sum(len(c.turns) for c in self.conversations)


def _valid(where: str, key: str, value: Any, kind: str) -> Any:
    """The value in its normalised form, or a SuiteError saying what the key takes."""
    if kind == "words":
        items = [value] if isinstance(value, str) else value
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(v, str) and v.strip() for v in items)
        ):
            raise SuiteError(f"{where}: '{key}' must be a non-empty string or a list of non-empty strings")
        if key in ("matches", "not_matches"):
            for pattern in items:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise SuiteError(
                        f"{where}: '{key}' pattern {pattern!r} is not a valid regex ({exc})"
                    ) from None
        return tuple(items)
    if kind == "bool":
        if not isinstance(value, bool):
            raise SuiteError(f"{where}: '{key}' must be true or false")
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SuiteError(f"{where}: '{key}' must be a whole number >= 0")
        return value
    if kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not -1.0 <= value <= 1.0:
            raise SuiteError(f"{where}: '{key}' must be a cosine between -1 and 1")
        return float(value)
    if kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise SuiteError(f"{where}: '{key}' must be a non-empty string")
        return value
    if kind == "facts":
        if (
            not isinstance(value, dict)
            or not value
            or not all(isinstance(v, (bool, str)) for v in value.values())
        ):
            raise SuiteError(f"{where}: 'facts' must be a table of fact = true/false (or a value string)")
        return dict(value)
    raise SuiteError(f"{where}: internal: unknown value kind {kind}")  # pragma: no cover


def _unknown(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    check_keys(data, allowed, where, error=SuiteError)


def _expectations(where: str, data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ASSERTIONS:
            out[key] = _valid(where, key, value, ASSERTIONS[key])
        elif key in SETTINGS:
            out[key] = _valid(where, key, value, SETTINGS[key])
    return out


def _history(where: str, value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise SuiteError(f"{where}: 'history' must be a list of {{role, content}} tables")
    out = []
    for i, item in enumerate(value):
        if (
            not isinstance(item, dict)
            or set(item) != {"role", "content"}
            or item["role"] not in ("user", "assistant")
            or not isinstance(item["content"], str)
        ):
            raise SuiteError(
                f'{where}: history item {i + 1} must be {{role = "user"|"assistant", content = "..."}}'
            )
        out.append({"role": item["role"], "content": item["content"]})
    return tuple(out)


def _defaults(where: str, raw: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by a table of default assertions (the suite's, or one conversation's)."""
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: defaults must be a table of assertions")
    _unknown(where, raw, set(ASSERTIONS) | set(SETTINGS))
    return {**base, **_expectations(where, raw)}


def _turn(where: str, item: Any, defaults: Mapping[str, Any]) -> Turn:
    if not isinstance(item, dict):
        raise SuiteError(f"{where}: a turn must be a table with 'customer'")
    _unknown(where, item, _TURN_KEYS)
    customer = item.get("customer")
    if not isinstance(customer, str) or not customer.strip():
        raise SuiteError(f"{where}: 'customer' must be the customer's line (a non-empty string)")
    merged = {**defaults, **_expectations(where, item)}
    threshold = float(merged.pop("similar_threshold", DEFAULT_THRESHOLD))
    if "similar_to" not in item:
        merged.pop("similar_to", None)  # a suite-wide reference reply would make no sense
    return Turn(
        customer=customer,
        expect=Expect(checks=merged, similar_threshold=threshold),
        note=str(item.get("note", "")),
    )


def _conversation(source: str, n: int, conv: Any, defaults: Mapping[str, Any]) -> Conversation:
    if not isinstance(conv, dict):
        raise SuiteError(f"{source}: conversation #{n} must be a table")
    cid = conv.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise SuiteError(f"{source}: conversation #{n}: 'id' must be a non-empty string")
    where = f"{source}: conversation '{cid}'"
    _unknown(where, conv, _CONV_KEYS)
    tags = conv.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SuiteError(f"{where}: 'tags' must be a list of strings")
    own = _defaults(f"{where} defaults", conv.get("defaults", {}), defaults)
    turns_raw = conv.get("turns")
    if not isinstance(turns_raw, list) or not turns_raw:
        raise SuiteError(f"{where}: 'turns' must be a non-empty list of [[conversations.turns]] tables")
    turns = tuple(_turn(f"{where} turn {t}", item, own) for t, item in enumerate(turns_raw, 1))
    return Conversation(
        id=cid,
        turns=turns,
        tags=tuple(tags),
        description=str(conv.get("description", "")),
        history=_history(where, conv.get("history", [])),
    )


def parse_suite(data: Mapping[str, Any], source: str = "<suite>") -> Suite:
    """Validate a parsed TOML document into a Suite; raises SuiteError naming the field and the fix."""
    _unknown(source, data, _SUITE_KEYS)
    head = data.get("suite", {})
    if not isinstance(head, dict):
        raise SuiteError(f"{source}: [suite] must be a table with name and description")
    _unknown(f"{source} [suite]", head, _SUITE_TABLE)
    defaults = _defaults(f"{source} [defaults]", data.get("defaults", {}), DEFAULT_ON)
    raw = data.get("conversations")
    if not isinstance(raw, list) or not raw:
        raise SuiteError(f"{source}: no conversations; add [[conversations]] tables with id and turns")
    conversations: list[Conversation] = []
    for n, item in enumerate(raw, 1):
        conv = _conversation(source, n, item, defaults)
        if any(c.id == conv.id for c in conversations):
            raise SuiteError(
                f"{source}: conversation '{conv.id}': duplicate id; give each conversation its own id"
            )
        conversations.append(conv)
    return Suite(
        name=str(head.get("name") or Path(source).stem),
        conversations=tuple(conversations),
        description=str(head.get("description", "")),
        source=source,
    )


def load_suite(path: Path | str) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(
            f"suite file {path} not found; pass a .toml suite (see tests/conversations/demo.toml)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SuiteError(f"{path.name}: not UTF-8 text; save the suite as UTF-8 TOML") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path.name}: invalid TOML ({exc}); fix the file") from None
    return parse_suite(data, path.name)


def select(suite: Suite, expression: str | None) -> Suite:
    """Conversations whose id or tags match `-k`: words are substrings; `not`, `and`, `or` combine them."""
    if not expression or not expression.strip():
        return suite
    kept = tuple(c for c in suite.conversations if _match(expression, c))
    return Suite(name=suite.name, conversations=kept, description=suite.description, source=suite.source)


def _match(expression: str, conv: Conversation) -> bool:
    names = [conv.id.lower(), *(t.lower() for t in conv.tags)]

    def term(word: str) -> bool:
        return any(word in n for n in names)

    for alternative in re.split(r"\s+or\s+", expression.strip().lower()):
        ok = True
        for part in re.split(r"\s+and\s+", alternative.strip()):
            part = part.strip()
            negate = part.startswith("not ")
            word = part[4:].strip() if negate else part
            if term(word) == negate:
                ok = False
                break
        if ok:
            return True
    return False
