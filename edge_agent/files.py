"""Small file helpers shared by the pack and model code: hashing, LFS pointers, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["sha256_file", "is_lfs_pointer", "read_json_object", "write_json_atomic", "write_bytes_atomic", "home_dir"]

_LFS_MAGIC = b"version https://git-lfs.github.com/spec"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_lfs_pointer(path: Path) -> bool:
    """True when `path` is a Git-LFS pointer file instead of the real content."""
    path = Path(path)
    try:
        if path.stat().st_size > 1024:
            return False
        with path.open("rb") as fh:
            return fh.read(len(_LFS_MAGIC)) == _LFS_MAGIC
    except OSError:
        return False


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object, read once per version of the file ({} for any other JSON value).

    Fact sources call this every turn; the file is parsed again only when its size or mtime changes.
    """
    stat = path.stat()
    return _read_json_object(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _read_json_object(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def home_dir() -> Path:
    """Where caches, registered models and built packs live: $EDGE_AGENT_HOME or ~/.edge-agent."""
    env = os.environ.get("EDGE_AGENT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".edge-agent"
