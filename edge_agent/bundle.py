"""One-file bundles: a pack, its model pin and optionally the GGUF, to copy to a device and install.

A bundle (`.eapack`) is an uncompressed POSIX tar whose first member, `bundle.json`, lists every
other member with its size and sha256, plus the model pin (name, sha256, size). `install_bundle`
checks all of it before writing anything under $EDGE_AGENT_HOME, extracts only plain files to paths
it computes itself, and replaces an installed pack of the same name only when asked to.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from . import __version__
from .errors import ModelError, PackError
from .files import home_dir
from .pack import load_pack

__all__ = [
    "BUNDLE_FORMAT",
    "BundleReport",
    "InstallReport",
    "install_bundle",
    "installed_packs",
    "pack_model",
    "packs_dir",
    "read_bundle_info",
    "resolve_pack",
    "write_bundle",
]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "edge-agent-bundle"
BUNDLE_VERSION = 1
INFO = "bundle.json"  # first member of the archive; also the install record inside an installed pack
INFO_MAX_BYTES = 4 << 20
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PART_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
CHUNK = 1 << 20
REBUNDLE = "copy the file again, or rebuild it with: edge-agent pack bundle PACK --out FILE"


def packs_dir() -> Path:
    return home_dir() / "packs"


@dataclass(frozen=True)
class BundleReport:
    path: Path
    name: str
    files: int
    bytes: int
    model: Mapping[str, Any]


@dataclass(frozen=True)
class InstallReport:
    name: str
    path: Path
    model: str  # the name `chat --pack NAME` will load
    model_path: Path | None  # where an included GGUF was put
    replaced: bool


# --- the pin ------------------------------------------------------------------------------------


def _model_pin(model: str | None, include: bool) -> tuple[dict[str, Any], Path | None]:
    """(pin, GGUF to include or None). A name needs no files here unless the GGUF is included."""
    from .models import default_model_name, list_models, resolve_model, verify_model

    name = model or default_model_name()
    entry = next((e for e in list_models() if e.name == name and e.kind == "student"), None)
    if entry is not None and not include:
        return {"name": entry.name, "sha256": entry.sha256, "size": entry.size, "file": None}, None
    spec = resolve_model(name)
    verify_model(spec)
    if spec.chat_template_path is not None:
        raise ModelError(f"{spec.name} uses a separate chat template file; register a GGUF that carries its "
                         "own template, or bundle without --include-model and copy the template yourself")
    pin = {"name": spec.name, "sha256": spec.sha256, "size": spec.size,
           "file": f"model/{spec.name}.gguf" if include else None}
    return pin, (spec.path if include else None)


# --- writing ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _digest(info: Mapping[str, Any]) -> str:
    body = {k: v for k, v in info.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    # Fixed metadata: the same pack and model give a byte-identical bundle.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingReader:
    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.digest.update(data)
        return data


def write_bundle(
    pack: Path | str,
    out: Path | str,
    *,
    name: str | None = None,
    model: str | None = None,
    include_model: bool = False,
    force: bool = False,
) -> BundleReport:
    """Write `out`: the verified pack, the model pin and (with `include_model`) the student GGUF."""
    root = Path(pack)
    loaded = load_pack(root)
    name = name or re.sub(r"[^a-z0-9._-]+", "-", loaded.path.resolve().name.lower()).strip("-._") or "pack"
    if not NAME_RE.match(name):
        raise PackError(f"invalid bundle name {name!r}; use lowercase letters, digits, '.', '_' and '-' "
                        "(at most 64), e.g. --name desk")
    target = Path(out)
    if target.exists() and not force:
        raise PackError(f"{target} already exists; pass --force to overwrite it or choose another --out")
    pin, gguf = _model_pin(pack_model(root, model), include_model)
    sources: dict[str, Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in loaded.manifest.files or rel == "manifest.json":
            sources[f"pack/{rel}"] = path  # only the pack's own files, not an old install record
    if gguf is not None:
        sources[str(pin["file"])] = gguf
    files: dict[str, dict[str, Any]] = {rel: {"sha256": _sha256(p), "bytes": p.stat().st_size}
                                        for rel, p in sources.items()}
    if gguf is not None and files[str(pin["file"])]["sha256"] != pin["sha256"]:
        raise ModelError(f"{pin['name']}: {gguf} does not match its registered sha256; fetch a good copy first")
    info: dict[str, Any] = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "name": name,
                            "model": pin, "files": files, "created_by": {"edge_agent_version": __version__}}
    info["digest"] = _digest(info)
    raw = (json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tarinfo(INFO, len(raw)), io.BytesIO(raw))
            for rel, path in sources.items():
                with path.open("rb") as src:
                    reader = _HashingReader(src)
                    tar.addfile(_tarinfo(rel, files[rel]["bytes"]), reader)  # type: ignore[arg-type]
                if reader.digest.hexdigest() != files[rel]["sha256"]:
                    raise PackError(f"{path} changed while it was being bundled; run the command again")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a bundle is meant to be copied around
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    total = sum(entry["bytes"] for entry in files.values())
    return BundleReport(path=target, name=name, files=len(files), bytes=total, model=pin)


# --- reading and checking -----------------------------------------------------------------------


def _bad(bundle: Path, what: str, fix: str = REBUNDLE) -> PackError:
    return PackError(f"bundle {bundle}: {what}; {fix}")


def _safe_member(bundle: Path, rel: Any) -> PurePosixPath:
    """A member path that stays inside the target: relative, plain parts, under pack/ or model/."""
    if not isinstance(rel, str) or "\\" in rel or "\0" in rel:
        raise _bad(bundle, f"member name {rel!r} is not allowed", "do not install this file")
    path = PurePosixPath(rel)
    parts = path.parts
    if (path.is_absolute() or len(parts) < 2 or parts[0] not in ("pack", "model")
            or any(p in ("", ".", "..") or not PART_RE.match(p) for p in parts)
            or (parts[0] == "model" and len(parts) != 2)):
        raise _bad(bundle, f"member {rel!r} would be written outside the pack or model folders",
                   "do not install this file")
    return path


def _check_info(bundle: Path, info: Any) -> dict[str, Any]:
    if not isinstance(info, dict) or info.get("format") != BUNDLE_FORMAT:
        raise _bad(bundle, f"'{INFO}' is not an edge-agent bundle description")
    if info.get("format_version") != BUNDLE_VERSION:
        raise _bad(bundle, f"format_version {info.get('format_version')!r} is not supported by edge-agent "
                           f"{__version__} (supports {BUNDLE_VERSION})",
                   "upgrade edge-agent on this device or bundle the pack with this version")
    if info.get("digest") != _digest(info):
        raise _bad(bundle, f"'{INFO}' does not match its own digest (it was damaged or edited)")
    name, files, model = info.get("name"), info.get("files"), info.get("model")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _bad(bundle, f"invalid pack name {name!r} in '{INFO}'")
    if not isinstance(files, dict) or "pack/manifest.json" not in files:
        raise _bad(bundle, f"'{INFO}' lists no pack/manifest.json")
    for rel, entry in files.items():
        _safe_member(bundle, rel)
        if (not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or entry["bytes"] < 0
                or not isinstance(entry.get("sha256"), str)):
            raise _bad(bundle, f"'{INFO}' entry for {rel!r} needs bytes and sha256")
    if (not isinstance(model, dict) or not isinstance(model.get("name"), str)
            or not isinstance(model.get("sha256"), str) or not isinstance(model.get("size"), int)):
        raise _bad(bundle, f"'{INFO}' has no model pin (name, sha256, size)")
    if model.get("file") is not None and model["file"] not in files:
        raise _bad(bundle, f"'{INFO}' names model file {model['file']!r} but does not list it")
    return info


def _open(bundle: Path) -> tarfile.TarFile:
    if not bundle.is_file():
        raise PackError(f"bundle {bundle} does not exist; pass the .eapack file made by edge-agent pack bundle")
    try:
        return tarfile.open(bundle, mode="r:")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _bad(bundle, f"not a readable bundle ({exc})") from None


def _members(bundle: Path, tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """Members in archive order; any read failure (truncation, bad header) is one PackError."""
    try:
        while True:
            member = tar.next()
            if member is None:
                return
            yield member, (tar.extractfile(member) if member.isreg() else None)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _bad(bundle, f"the archive is truncated or damaged ({exc})") from None


def _read_info(bundle: Path, members: Iterator[Any]) -> dict[str, Any]:
    first = next(members, None)
    if first is None or first[0].name != INFO or first[1] is None:
        raise _bad(bundle, f"the first member is not '{INFO}'")
    if first[0].size > INFO_MAX_BYTES:
        raise _bad(bundle, f"'{INFO}' is implausibly large")
    try:
        raw = first[1].read()
        info = json.loads(raw.decode("utf-8"))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _bad(bundle, f"the archive is truncated or damaged ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(bundle, f"'{INFO}' is not valid JSON ({exc})") from None
    return _check_info(bundle, info)


def _copy_member(bundle: Path, rel: str, src: IO[bytes], entry: Mapping[str, Any], dest: IO[bytes] | None) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        while block := src.read(CHUNK):
            digest.update(block)
            size += len(block)
            if dest is not None:
                dest.write(block)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _bad(bundle, f"the archive is truncated or damaged at {rel} ({exc})") from None
    if size != entry["bytes"]:
        raise _bad(bundle, f"{rel} has {size} bytes, '{INFO}' says {entry['bytes']} (truncated?)")
    if digest.hexdigest() != entry["sha256"]:
        raise _bad(bundle, f"sha256 of {rel} does not match '{INFO}' (the file was damaged in transfer)")


def _walk(bundle: Path, sink: Path | None) -> dict[str, Any]:
    """Check every member against bundle.json; with `sink`, also write the checked files under it."""
    tar = _open(bundle)
    with tar:
        members = _members(bundle, tar)
        info = _read_info(bundle, members)
        files: dict[str, Any] = info["files"]
        seen: set[str] = set()
        for member, src in members:
            rel = member.name
            if rel not in files:
                raise _bad(bundle, f"member {rel!r} is not listed in '{INFO}'", "do not install this file")
            if rel in seen:
                raise _bad(bundle, f"member {rel!r} appears twice", "do not install this file")
            if src is None or not member.isreg():
                raise _bad(bundle, f"member {rel!r} is not a plain file (links and devices are refused)",
                           "do not install this file")
            seen.add(rel)
            if sink is None:
                _copy_member(bundle, rel, src, files[rel], None)
                continue
            dest = sink.joinpath(*_safe_member(bundle, rel).parts)
            if not dest.resolve().is_relative_to(sink.resolve()):
                raise _bad(bundle, f"member {rel!r} would be written outside the target", "do not install this file")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("xb") as out:
                _copy_member(bundle, rel, src, files[rel], out)
        missing = sorted(set(files) - seen)
        if missing:
            raise _bad(bundle, f"{len(missing)} listed file(s) are missing, first {missing[0]} (truncated?)")
    return info


def read_bundle_info(bundle: Path | str, *, verify: bool = True) -> dict[str, Any]:
    """The bundle's description; with `verify`, after checking every member's size and sha256."""
    path = Path(bundle)
    if verify:
        return _walk(path, None)
    with _open(path) as tar:
        return _read_info(path, _members(path, tar))


# --- installing ---------------------------------------------------------------------------------


def _register_model(gguf: Path, pin: Mapping[str, Any]) -> str:
    """Register an installed GGUF under the pin's name (or a derived one if that name is taken)."""
    from .models import add_model, builtin_registry_text, parse_registry
    from .registry import read_user_registry

    builtin = {e.name for e in parse_registry(builtin_registry_text())}
    users = {e.name: e for e in read_user_registry()}
    name = str(pin["name"])
    taken = name in builtin or (name in users and users[name].sha256 != pin["sha256"])
    if taken or not NAME_RE.match(name):
        name = f"{re.sub(r'[^a-z0-9._-]+', '-', name.lower())[:48].strip('-._') or 'model'}-{str(pin['sha256'])[:8]}"
    spec = add_model(gguf, name)
    if spec.sha256 != pin["sha256"]:  # add_model hashed the file again
        raise ModelError(f"{gguf} changed after it was checked; run edge-agent pack install again")
    return name


def install_bundle(bundle: Path | str, *, name: str | None = None, force: bool = False) -> InstallReport:
    """Verify `bundle` completely, then install its pack as $EDGE_AGENT_HOME/packs/NAME (and its GGUF).

    Nothing is written before every hash has been checked; an installed pack of the same name is
    kept unless `force`. The pack is loaded (all its own checks) before it is moved into place.
    """
    path = Path(bundle)
    info = _walk(path, None)  # pass 1: read and hash everything, write nothing
    name = name or info["name"]
    if not NAME_RE.match(name):
        raise PackError(f"invalid pack name {name!r}; use lowercase letters, digits, '.', '_' and '-', "
                        "e.g. --name desk")
    target = packs_dir() / name
    if target.exists() and not force:
        raise PackError(f"a pack named {name!r} is already installed at {target}; pass --force to replace it "
                        "or --name OTHER to install beside it")
    if target.exists() and not (target / "manifest.json").is_file():
        raise PackError(f"{target} exists and is not a pack, so it is left alone even with --force; move it "
                        "away or install with --name OTHER")
    need = sum(int(e["bytes"]) for e in info["files"].values())
    packs_dir().mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(packs_dir()).free
    if free < need + (64 << 20):
        raise PackError(f"not enough disk space under {packs_dir()}: the bundle needs {need >> 20} MiB, "
                        f"{free >> 20} MiB are free; free some space or set EDGE_AGENT_HOME elsewhere")
    staging = Path(tempfile.mkdtemp(dir=packs_dir(), prefix=f".{name}.install-"))
    replaced = False
    try:
        again = _walk(path, staging)  # pass 2: the same checks while writing into the staging folder
        if again["digest"] != info["digest"]:
            raise _bad(path, "the file changed while it was being installed")
        load_pack(staging / "pack")
        pin = dict(info["model"])
        model_name, model_path = str(pin["name"]), None
        if pin.get("file"):
            models = home_dir() / "models"
            models.mkdir(parents=True, exist_ok=True)
            model_path = models / f"{model_name}-{str(pin['sha256'])[:12]}.gguf"
            os.replace(staging.joinpath(*PurePosixPath(pin["file"]).parts), model_path)
            model_name = _register_model(model_path, pin)
        record = {**{k: v for k, v in info.items() if k != "digest"}, "digest": info["digest"],
                  "installed": {"name": name, "model": model_name, "model_path": str(model_path) if model_path else None,
                                "from": path.name}}
        (staging / "pack" / INFO).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            (staging / "pack").rename(target)
            shutil.rmtree(old, ignore_errors=True)
            replaced = True
        else:
            (staging / "pack").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("installed pack %s at %s (model %s)", name, target, model_name)
    return InstallReport(name=name, path=target, model=model_name, model_path=model_path, replaced=replaced)


# --- finding installed packs --------------------------------------------------------------------


def installed_packs() -> list[str]:
    root = packs_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "manifest.json").is_file())


def resolve_pack(value: Path | str | None) -> Path | None:
    """A pack argument as a directory: an existing path wins, else an installed pack of that name."""
    if value is None:
        return None
    path = Path(value)
    if path.exists():
        return path
    text = str(value)
    if NAME_RE.match(text):
        if (packs_dir() / text).is_dir():
            return packs_dir() / text
        names = ", ".join(installed_packs()) or "none"
        raise PackError(f"no pack directory {text!r} and no installed pack of that name (installed: {names}); "
                        "install one with: edge-agent pack install FILE.eapack")
    return path


def pack_model(pack: Path | str, model: str | None = None) -> str | None:
    """The model to run `pack` with: `model` if given, else the one its bundle pinned (checked), else None."""
    if model is not None:
        return model
    record_path = Path(pack) / INFO
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        pin, installed = record["model"], record.get("installed", {})
        wanted, sha = str(installed.get("model") or pin["name"]), str(pin["sha256"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise PackError(f"pack {pack}: install record {INFO} is damaged; install the bundle again with "
                        "edge-agent pack install FILE --force") from None
    from .models import list_models, package_installed

    students = [e for e in list_models() if e.kind == "student"]

    def usable(e: Any) -> bool:  # a built-in model is usable only where its package is installed
        return e.origin == "user" or (e.package is not None and package_installed(e.package))

    named = next((e for e in students if e.name == wanted), None)
    if named is not None and named.sha256 == sha and usable(named):
        return wanted
    same = next((e for e in students if e.sha256 == sha and usable(e)), None)
    if same is not None:  # the same file registered under another name (edge-agent models add)
        return same.name
    if named is None or not usable(named):
        raise ModelError(f"pack {pack} was bundled for model {pin['name']} (sha256 {sha[:16]}..., {pin['size']} "
                         "bytes), which is not installed here; bundle it with --include-model, or register "
                         "that GGUF with: edge-agent models add FILE --name NAME, or pass --model")
    raise ModelError(f"pack {pack} was bundled for {pin['name']} with sha256 {sha[:16]}..., but the installed "
                     f"{wanted} has {named.sha256[:16]}...; install the same model version, bundle with "
                     "--include-model, or pass --model to use another")
