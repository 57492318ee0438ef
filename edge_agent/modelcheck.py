"""Checks on one model file before llama.cpp or an embedder opens it, and the sha256 cache.

Each failure is a one-line ModelError ending in the fix the caller names. This module knows files,
not the registry: `edge_agent.models.verify_model` feeds it a registered model's expectations.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

from .errors import ModelError
from .files import home_dir, is_lfs_pointer, sha256_file, write_json_atomic
from .gguf import GGUFError, GGUFInfo, read_gguf

__all__ = ["cached_sha256", "check_gguf", "check_model_file", "check_present", "verified_cache_path"]

log = logging.getLogger(__name__)

_VERIFIED_FORMAT = "edge-agent-verified-hashes"


def verified_cache_path() -> Path:
    return home_dir() / "verified.json"


def _load_verified() -> dict[str, Any]:
    path = verified_cache_path()
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable hash cache %s (%s)", path, err)
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("format") == _VERIFIED_FORMAT else None
    return files if isinstance(files, dict) else {}


def _stat_key(st: Any) -> dict[str, int]:
    """What identifies one unchanged file: an in-place write changes ctime (which `touch -r` cannot set
    back) and a replaced file has a new inode, so either forces a re-hash."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino,
            "device": st.st_dev}


def cached_sha256(path: Path, *, deep: bool = False) -> str:
    """sha256 of `path`, reusing the one cached in <home>/verified.json for the same path, size,
    mtime, ctime, inode and device unless `deep`; a freshly computed hash is written back."""
    path = Path(path).resolve()
    st = path.stat()
    key = _stat_key(st)
    files = _load_verified()
    hit = files.get(str(path))
    if (not deep and isinstance(hit, dict) and all(hit.get(k) == v for k, v in key.items())
            and isinstance(hit.get("sha256"), str)):
        return str(hit["sha256"])
    digest = sha256_file(path)
    if _stat_key(path.stat()) != key:  # written while we read it: do not vouch for this hash
        return digest
    files[str(path)] = {**key, "sha256": digest}
    try:
        write_json_atomic(verified_cache_path(), {"format": _VERIFIED_FORMAT, "version": 2, "files": files})
    except OSError as err:
        log.warning("cannot write hash cache %s (%s); hashes will be recomputed", verified_cache_path(), err)
    return digest


def check_present(path: Path, name: str, fix: str) -> int:
    """The size of `path`, after checking it is a real file and not a Git-LFS pointer."""
    if not path.exists():
        raise ModelError(f"{name}: model file {path} is missing; {fix}")
    if not path.is_file():
        raise ModelError(f"{name}: {path} is not a file; {fix}")
    if is_lfs_pointer(path):
        raise ModelError(f"{name}: {path} is a Git-LFS pointer, not the model; run git lfs pull in its "
                         f"repository, or {fix}")
    return path.stat().st_size


def check_gguf(path: Path, name: str, fix: str, template_given: bool) -> GGUFInfo:
    """The GGUF header of `path`; it must be whole and carry a chat template unless one is given."""
    try:
        info = read_gguf(path)
    except GGUFError as err:
        # An unsupported version needs a converted file; anything else, a good copy of this one.
        raise ModelError(f"{name}: {path}: {err.detail}; {err.fix if err.reason == 'unsupported' else fix}") \
            from None
    if info.chat_template is None and not template_given:
        raise ModelError(
            f"{name}: {path} has no tokenizer.chat_template in its GGUF metadata; give a Jinja template "
            f"with --chat-template FILE or edge-agent models add {shlex.quote(str(path))} --name NAME "
            "--chat-template FILE"
        )
    return info


def check_model_file(
    path: Path,
    *,
    name: str,
    size: int,
    sha256: str,
    fix: str,
    mismatch_fix: str,
    gguf: bool,
    template_given: bool = False,
    deep: bool = False,
) -> None:
    """Present, not an LFS pointer, not truncated, a sound GGUF (if `gguf`), then size and sha256.

    `fix` gets a good copy of the file; `mismatch_fix` is for a whole file with other contents.
    """
    actual = check_present(path, name, fix)
    if actual < size:
        raise ModelError(f"{name}: {path} is truncated ({actual} of {size} bytes); {fix}")
    if gguf:
        check_gguf(path, name, fix, template_given)
    if actual != size:
        raise ModelError(f"{name}: {path} has {actual} bytes, the registry says {size}; {mismatch_fix}")
    digest = cached_sha256(path, deep=deep)
    if digest != sha256:
        raise ModelError(f"{name}: sha256 of {path} is {digest[:16]}..., the registry says "
                         f"{sha256[:16]}...; {mismatch_fix}")
