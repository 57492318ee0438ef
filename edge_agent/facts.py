"""Facts: what is known to be true in this conversation, derived from the messages every turn.

A domain declares the facts its replies depend on (`[[facts]]`) and how each is established: from
the customer's own words (regexes, or example phrases matched with the pack's embedder), from the
agent's earlier replies, or from a deployment's fact source (a Python `module:function` or a local
command, given the conversation and the facts so far). Nothing is stored between requests: the
same messages always give the same facts. This module decides what holds; `planner` uses it.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .keys import check_keys

__all__ = [
    "Condition",
    "FactSpec",
    "Facts",
    "FactTracker",
    "FactSource",
    "parse_condition",
    "parse_fact_specs",
    "load_fact_source",
    "specs_from_manifest",
    "claimed_facts",
]

log = logging.getLogger(__name__)

FactSource = Callable[[Sequence[Mapping[str, str]], Mapping[str, Any]], Mapping[str, Any]]
_SPEC_KEYS = {
    "id",
    "description",
    "ask",
    "customer",
    "customer_not",
    "examples",
    "agent",
    "claims",
    "claims_not",
    "asked_by",
    "source",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Condition:
    """A requirement on one fact: `fact` must hold (value True) or must not (value False)."""

    fact: str
    value: bool = True

    def __str__(self) -> str:
        return self.fact if self.value else f"!{self.fact}"


def parse_condition(text: str) -> Condition:
    """ "identity_verified" -> must be true; "!within_minimum_term" or "not x" -> must be false."""
    raw = text.strip()
    value = True
    if raw.startswith("!"):
        raw, value = raw[1:].strip(), False
    elif raw.lower().startswith("not "):
        raw, value = raw[4:].strip(), False
    if not _NAME.match(raw):
        raise ConfigError(
            f"{text!r} is not a fact condition; write fact_name or !fact_name (lowercase, underscores)"
        )
    return Condition(raw, value)


@dataclass(frozen=True)
class FactSpec:
    """One declared fact and every way it can be established or asserted."""

    id: str
    description: str = ""
    ask: str = ""  # what the agent asks when a reply needs this fact and it is not known
    customer: tuple[str, ...] = ()  # regexes over the customer's messages that make it true
    customer_not: tuple[str, ...] = ()  # ... that make it false
    examples: tuple[str, ...] = ()  # customer phrases meaning it is true (matched with the embedder)
    agent: tuple[str, ...] = ()  # regexes over the agent's earlier replies that make it true
    claims: tuple[str, ...] = ()  # reply text that asserts it is true
    claims_not: tuple[str, ...] = ()  # reply text that asserts it is false
    asked_by: tuple[str, ...] = ()  # reply text that asks the customer for it
    source: bool = False  # the fact source may establish it

    def to_json(self) -> dict[str, Any]:
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in self.__dict__.items()
            if v not in ((), "", False)
        }


def specs_from_manifest(domain: Mapping[str, Any]) -> list[FactSpec]:
    """The FactSpecs a pack's manifest records (`FactSpec.to_json` rows under domain.facts)."""
    out = []
    for item in domain.get("facts", []) or []:
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in item.items()}
        out.append(FactSpec(**fields))
    return out


def _patterns(where: str, value: Any, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{where}: '{key}' must be a string or a list of strings")
    if key != "examples":
        for p in items:
            try:
                re.compile(p)
            except re.error as exc:
                raise ConfigError(f"{where}: '{key}' pattern {p!r} is not a valid regex ({exc})") from None
    return tuple(items)


def parse_fact_specs(items: Any, source: str = "<domain>") -> tuple[FactSpec, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{source}: [[facts]] must be an array of tables")
    specs: list[FactSpec] = []
    for n, item in enumerate(items, 1):
        where = f"{source} [[facts]] #{n}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a table with at least 'id'")
        check_keys(item, _SPEC_KEYS, where)
        fid = item.get("id")
        if not isinstance(fid, str) or not _NAME.match(fid):
            raise ConfigError(f"{where}: 'id' must be a lowercase name like identity_verified")
        if any(s.id == fid for s in specs):
            raise ConfigError(f"{where}: duplicate fact id {fid!r}")
        kwargs: dict[str, Any] = {
            k: _patterns(where, item[k], k)
            for k in ("customer", "customer_not", "examples", "agent", "claims", "claims_not", "asked_by")
            if k in item
        }
        for key in ("description", "ask"):
            if key in item and not isinstance(item[key], str):
                raise ConfigError(f"{where}: '{key}' must be a string")
        if "source" in item and not isinstance(item["source"], bool):
            raise ConfigError(f"{where}: 'source' must be true or false")
        specs.append(
            FactSpec(
                id=fid,
                description=item.get("description", ""),
                ask=item.get("ask", ""),
                source=bool(item.get("source", False)),
                **kwargs,
            )
        )
    return tuple(specs)


@dataclass
class Facts:
    """Fact values for one conversation (True, False or a text value) and where each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)

    def get(self, fact: str) -> Any:
        return self.values.get(fact)

    def holds(self, cond: Condition) -> bool | None:
        """True/False when the fact is known, None when it is not established either way."""
        value = self.values.get(cond.fact)
        if value is None:
            return None
        return bool(value) == cond.value

    def set(self, fact: str, value: Any, why: str) -> None:
        if value is None:
            return
        self.values[fact] = value
        self.why[fact] = why

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)


def _search(patterns: Sequence[str], text: str) -> bool:
    return any(re.search(p, text, re.IGNORECASE | re.MULTILINE) for p in patterns)


_CONDITIONAL = re.compile(
    r"\b(?:if|whether|unless|once|depends|in case|as long as|provided that)\b", re.IGNORECASE
)
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")


def claimed_facts(text: str, specs: Sequence[FactSpec]) -> list[Condition]:
    """The fact conditions a reply asserts (its `claims` / `claims_not` patterns match).

    A conditional sentence ("if the fault is on our side, the visit is free") asserts nothing.
    """
    assertive = "\n".join(s for s in _SENTENCES.split(text) if s.strip() and not _CONDITIONAL.search(s))
    out: list[Condition] = []
    for spec in specs:
        if spec.claims and _search(spec.claims, assertive):
            out.append(Condition(spec.id, True))
        if spec.claims_not and _search(spec.claims_not, assertive):
            out.append(Condition(spec.id, False))
    return out


class FactTracker:
    """Derives `Facts` from messages: customer words, earlier agent replies, then the fact source."""

    def __init__(
        self,
        specs: Sequence[FactSpec],
        source: FactSource | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        example_threshold: float = 0.8,
    ) -> None:
        self.specs = list(specs)
        self.by_id = {s.id: s for s in self.specs}
        self.source = source
        self.embed = embed
        self.example_threshold = example_threshold
        self._example_vecs: dict[str, np.ndarray] = {}
        self._text_vecs: dict[str, np.ndarray] = {}
        self.establishers: list[
            tuple[str, tuple[str, ...], tuple[str, ...]]
        ] = []  # (entry id, sentences, facts)

    def add_establishers(self, strategies: Sequence[Any]) -> None:
        """Library entries whose reply, once given, establishes facts (`establishes`): a later turn sees
        those facts when an earlier agent message carries most of that reply's sentences."""
        for s in strategies:
            if getattr(s, "establishes", ()) and s.exemplar.strip():
                sentences = tuple(
                    " ".join(x.lower().split()) for x in _SENTENCES.split(s.exemplar) if x.strip()
                )
                self.establishers.append((s.id, sentences, tuple(s.establishes)))

    def _examples(self, spec: FactSpec) -> np.ndarray | None:
        if not spec.examples or self.embed is None:
            return None
        if spec.id not in self._example_vecs:
            self._example_vecs[spec.id] = self.embed(list(spec.examples))
        return self._example_vecs[spec.id]

    def vector(self, text: str) -> np.ndarray:
        """`text` embedded, once per distinct text (the grounded turn embeds its requests through here)."""
        if self.embed is None:
            raise ConfigError("this fact tracker has no embedder")
        vec = self._text_vecs.get(text)
        if vec is None:
            vec = self._text_vecs[text] = self.embed([text])[0]
            if len(self._text_vecs) > 512:  # a long-running server sees many conversations
                self._text_vecs.pop(next(iter(self._text_vecs)))
        return vec

    def _message_vecs(self, messages: Sequence[Mapping[str, str]]) -> dict[int, np.ndarray] | None:
        """Vectors of the customer's messages, embedded once per distinct text (only if a fact has
        examples)."""
        if self.embed is None or not any(s.examples for s in self.specs):
            return None
        return {i: self.vector(str(m.get("content", ""))) for i, m in enumerate(messages) if m.get("role") == "user"}

    def derive(
        self, messages: Sequence[Mapping[str, str]], message_vecs: Mapping[int, np.ndarray] | None = None
    ) -> Facts:
        facts = Facts()
        if message_vecs is None:
            message_vecs = self._message_vecs(messages)
        for i, m in enumerate(messages):
            text = str(m.get("content", ""))
            role = m.get("role")
            for spec in self.specs:
                if role == "user":
                    if spec.customer_not and _search(spec.customer_not, text):
                        facts.set(spec.id, False, f"customer, turn {i + 1}")
                    elif spec.customer and _search(spec.customer, text):
                        facts.set(spec.id, True, f"customer, turn {i + 1}")
                    elif spec.examples and message_vecs is not None and i in message_vecs:
                        ex = self._examples(spec)
                        if ex is not None and float(np.max(ex @ message_vecs[i])) >= self.example_threshold:
                            facts.set(spec.id, True, f"customer (by meaning), turn {i + 1}")
                elif role == "assistant" and spec.agent and _search(spec.agent, text):
                    facts.set(spec.id, True, f"agent, turn {i + 1}")
            if role == "assistant" and self.establishers:
                said = " ".join(text.lower().split())
                for sid, sentences, established in self.establishers:
                    if sum(x in said for x in sentences) * 2 >= len(sentences):
                        for raw in established:
                            cond = parse_condition(raw)
                            facts.set(cond.fact, cond.value, f"agent reply {sid}, turn {i + 1}")
        if self.source is not None:
            try:
                found = self.source(list(messages), dict(facts.values))
            except Exception as exc:  # a deployment hook must never take a turn down
                log.warning("fact source failed: %s: %s", type(exc).__name__, exc)
                facts.why["fact_source"] = f"failed: {type(exc).__name__}"
                found = {}
            if not isinstance(found, Mapping):
                log.warning("fact source returned %s, not a mapping; ignored", type(found).__name__)
                found = {}
            for key, value in found.items():
                if isinstance(key, str) and isinstance(value, (bool, str, int, float)):
                    facts.set(key, value, "fact source")
        return facts


# --- fact sources --------------------------------------------------------------------------------
def _python_source(target: str, data: Path | None) -> FactSource:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"fact source {target!r} must be 'module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"fact source {target!r} cannot be loaded ({exc}); install the module or fix the name"
        ) from None
    if not callable(fn):
        raise ConfigError(f"fact source {target!r} is not a function")

    def call(messages: Sequence[Mapping[str, str]], known: Mapping[str, Any]) -> Mapping[str, Any]:
        return fn(messages, known, data)  # type: ignore[no-any-return]

    return call


def _command_source(argv: Sequence[str], data: Path | None, timeout: float) -> FactSource:
    def call(messages: Sequence[Mapping[str, str]], known: Mapping[str, Any]) -> Mapping[str, Any]:
        payload = json.dumps(
            {"messages": list(messages), "facts": dict(known), "data": str(data) if data else None}
        )
        done = subprocess.run(
            list(argv), input=payload, capture_output=True, text=True, timeout=timeout, check=True
        )
        out = json.loads(done.stdout or "{}")
        return out if isinstance(out, dict) else {}

    return call


def load_fact_source(config: Mapping[str, Any] | None, base: Path | None = None) -> FactSource | None:
    """A fact source from a `[fact_source]` table: {python = "mod:fn"} or {command = [...]}, and
    optionally `data` (a file path, relative to `base`)."""
    if not config:
        return None
    check_keys(config, ("python", "command", "data", "timeout_s"), "[fact_source]")
    data = None
    if config.get("data"):
        data = Path(str(config["data"]))
        if base is not None and not data.is_absolute():
            data = base / data
    if "python" in config and "command" in config:
        raise ConfigError("[fact_source]: give either 'python' or 'command', not both")
    if "python" in config:
        return _python_source(str(config["python"]), data)
    if "command" in config:
        argv = config["command"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(
                "[fact_source]: 'command' must be a list of strings (the program and its arguments)"
            )
        return _command_source(argv, data, float(config.get("timeout_s", 2.0)))
    raise ConfigError("[fact_source]: give 'python = \"module:function\"' or 'command = [\"program\", ...]'")
