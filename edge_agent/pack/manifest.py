"""A pack's manifest and its run-time settings, as types: `Manifest` and `PackSettings`.

`PackSettings` holds the real `RetrievalConfig`, `PromptConfig` and `GenerationConfig`, checked when
a domain loads, when a pack is built and when one loads; it remembers the tables as given, so a
manifest keeps exactly the keys that were written. `Manifest` is a read-only view of manifest.json
with typed parts (domain, rules, settings). Reading and writing the files stays in `edge_agent.pack`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..backends import GenerationConfig
from ..errors import ConfigError
from ..keys import check_keys
from ..policy import PolicyRule
from ..rendering import PromptConfig
from ..retrieval import RetrievalConfig

__all__ = ["SETTINGS_TABLES", "Manifest", "PackSettings", "check_mode_params", "mode_param_keys", "prompting_for",
           "rules_from_manifest"]

SETTINGS_TABLES = ("retrieval", "prompting", "generation")
Table = Mapping[str, Any]


def check_mode_params(prompting: PromptConfig) -> None:
    """Refuse params the prompting mode does not read: the adapt and grounded modes accept exactly
    their own knobs (plus what their fallback renderer reads); rendering modes read `form` and
    `exemplar_tokens` and ignore the rest, so one registered by a user may take its own."""
    if prompting.mode == "grounded":
        from ..planner import PlannerParams

        PlannerParams.from_params(prompting.params)
    elif prompting.mode == "adapt":
        from ..adapt import AdaptParams

        AdaptParams.from_params(prompting.params)


def mode_param_keys(mode: str) -> frozenset[str] | None:
    """The params keys the adapt and grounded modes read; None for rendering modes (they ignore others)."""
    if mode == "grounded":
        from ..planner import PlannerParams

        return frozenset(PlannerParams.__dataclass_fields__)
    if mode == "adapt":
        from ..adapt import RENDER_PARAMS, AdaptParams

        return frozenset([*AdaptParams.__dataclass_fields__, *RENDER_PARAMS])
    return None


def prompting_for(pack: Table, override: Table | None) -> dict[str, Any]:
    """The prompting table for a run: the pack's, with `override` on top (its params, if given,
    replace the pack's).

    The pack's params belong to the pack's mode: run in another mode without params of its own
    (`chat --mode adapt` on a grounded pack), only those the other mode reads are carried over.
    """
    override = dict(override or {})
    out = {**pack, **override}
    if "params" in override:
        return out
    base_mode = pack.get("mode", PromptConfig.mode)
    keys = mode_param_keys(str(out.get("mode", base_mode))) if out.get("mode", base_mode) != base_mode else None
    if "params" in pack and keys is not None:
        out["params"] = {k: v for k, v in dict(pack["params"] or {}).items() if k in keys}
    return out


def rules_from_manifest(domain: Mapping[str, Any]) -> list[PolicyRule]:
    """The policy rules a manifest's domain block carries (manifest.domain.rules)."""
    rules = []
    for n, raw in enumerate(domain.get("rules", []) or [], 1):
        try:
            rules.append(PolicyRule(**raw))
        except TypeError as exc:
            raise ConfigError(f"manifest.domain.rules #{n} is malformed ({exc}); rebuild the pack with "
                              "--domain DOMAIN.toml") from None
    return rules


def _table(config: Any) -> dict[str, Any]:
    """The table a typed config stands for (every field: it was given as a whole)."""
    if isinstance(config, PromptConfig):
        return {"mode": config.mode, "params": dict(config.params)}
    out = asdict(config)
    if "stop" in out:
        out["stop"] = list(out["stop"])
    return out


def _parse(name: str, value: Any) -> tuple[Any, dict[str, Any]]:
    """(typed config, table as given) for one settings part; ConfigError names the problem."""
    kinds: dict[str, Any] = {"retrieval": RetrievalConfig, "prompting": PromptConfig, "generation": GenerationConfig}
    kind = kinds[name]
    if value is None:
        value = {}
    if isinstance(value, kind):
        config, table = value, _table(value)
    elif isinstance(value, Mapping):
        table = dict(value)
        config = kind.from_mapping(table)
    else:
        raise ConfigError(f"must be a table of settings, got {type(value).__name__}")
    if isinstance(config, PromptConfig):
        check_mode_params(config)
    return config, table


@dataclass(frozen=True, init=False)
class PackSettings:
    """Run-time choices stored in the manifest: retrieval, prompt rendering and decoding.

    Each part may be given as its typed config or as a table (checked here); `tables` keeps what
    was given, which is what the manifest stores and what overrides a model's decoding defaults.
    """

    retrieval: RetrievalConfig
    prompting: PromptConfig
    generation: GenerationConfig
    tables: Mapping[str, Table]

    def __init__(self, retrieval: RetrievalConfig | Table | None = None, prompting: PromptConfig | Table | None = None,
                 generation: GenerationConfig | Table | None = None) -> None:
        self._set({"retrieval": retrieval, "prompting": prompting, "generation": generation}, lambda name: name)

    def _set(self, given: Mapping[str, Any], label: Callable[[str], str]) -> None:
        tables: dict[str, dict[str, Any]] = {}
        for name in SETTINGS_TABLES:
            try:
                config, tables[name] = _parse(name, given.get(name))
            except ConfigError as exc:
                raise ConfigError(f"{label(name)}: {exc}") from None
            object.__setattr__(self, name, config)
        object.__setattr__(self, "tables", tables)

    @classmethod
    def from_tables(cls, tables: Mapping[str, Any], label: Callable[[str], str] = lambda name: name,
                    where: str = "settings") -> PackSettings:
        """Settings from a mapping of the three tables (a manifest's `settings`, a domain's tables);
        errors name the part as `label(name)` and an unknown part as `where`."""
        if not isinstance(tables, Mapping):
            raise ConfigError(f"{where} must be an object of settings tables, got {type(tables).__name__}")
        check_keys(tables, SETTINGS_TABLES, where)
        out = cls.__new__(cls)
        out._set(tables, label)
        return out

    def table(self, name: str) -> dict[str, Any]:
        """A copy of one table as given (e.g. the generation overrides of a model's defaults)."""
        return copy.deepcopy(dict(self.tables[name]))

    def to_json(self) -> dict[str, Any]:
        return {name: dict(self.tables[name]) for name in SETTINGS_TABLES}


class _Part:
    """A top-level JSON object of the manifest, by the attribute's name ({} where absent or not an object)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, manifest: Manifest | None, owner: type | None = None) -> Mapping[str, Any]:
        return {} if manifest is None else manifest._part(self.key)


class Manifest(Mapping[str, Any]):
    """A loaded pack's manifest.json: typed parts, and read-only access to the raw JSON."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)
        self._settings = PackSettings.from_tables(
            self._data.get("settings", {}), lambda name: f"manifest.settings.{name}", "manifest.settings")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Manifest({self._data!r})"

    def to_json(self) -> dict[str, Any]:
        """A copy of the raw JSON object."""
        return copy.deepcopy(self._data)

    def _part(self, key: str) -> Mapping[str, Any]:
        value = self._data.get(key, {})
        return value if isinstance(value, Mapping) else {}

    embedder = _Part()  # id, kind, dim, normaliser
    counts = _Part()  # strategies, vectors, approved
    files = _Part()  # relative path -> sha256 and size
    index = _Part()  # kind, metric
    build = _Part()  # what built the pack
    domain = _Part()  # name, company, system prompt, rules, facts, replies

    @property
    def settings(self) -> PackSettings:
        return self._settings

    @property
    def system_prompt(self) -> str:
        return str(self.domain.get("system_prompt", ""))

    @property
    def company(self) -> str:
        return str(self.domain.get("company", ""))

    @property
    def domain_name(self) -> str:
        return str(self.domain.get("name", ""))

    @property
    def rules(self) -> list[PolicyRule]:
        """The policy rules the pack was built with (manifest.domain.rules)."""
        return rules_from_manifest(self.domain)

    def data_files(self) -> list[str]:
        """The fact-source data files the pack carries (its files under facts/)."""
        return [rel for rel in self.files if str(rel).startswith("facts/")]

