"""Where a built pack may go: checks on an output directory, and a swap that loses nothing.

A pack build writes into a temporary sibling and then swaps it into place. This module decides
whether the destination may be replaced (absent, empty, or an existing pack), refuses anything else
unless forced, and never deletes what is not a pack: files a user kept beside an old pack's own
files are moved into the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import PackError

__all__ = ["check_destination", "install_dir", "is_pack_dir", "pack_entries"]

MANIFEST = "manifest.json"
FORMAT_NAME = "edge-agent-pack"


def is_pack_dir(path: Path) -> bool:
    """True when `path` is a directory whose manifest.json names the pack format."""
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def pack_entries(path: Path) -> set[str]:
    """Top-level names an existing pack owns: the manifest and the first part of each listed file."""
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = data.get("files", {}) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        files = {}
    owned = {MANIFEST}
    for rel in files if isinstance(files, dict) else ():
        head = str(rel).replace("\\", "/").split("/")[0]
        if head not in ("", ".", ".."):
            owned.add(head)
    return owned


def check_destination(path: Path | str, *, force: bool = False) -> Path:
    """The absolute destination, after refusing what a build must not replace.

    Absent, an empty directory or an existing pack: fine. A file, or a non-empty directory that
    is not a pack: PackError unless `force` (then the pack's files are written into the directory
    and everything else in it stays).
    """
    root = Path(path).expanduser().absolute()
    if root.parent == root:
        raise PackError(f"--out {path}: cannot write a pack at a filesystem root; name a directory")
    if root.is_symlink():
        raise PackError(f"--out {path} is a symbolic link; pass the directory it points to (nothing was changed)")
    if root.exists() and not root.is_dir():
        raise PackError(f"--out {path} is an existing file, not a pack directory; choose another --out "
                        "(nothing was changed)")
    if root.is_dir() and not is_pack_dir(root) and any(root.iterdir()) and not force:
        raise PackError(f"--out {path} is a non-empty directory that is not an edge-agent pack; choose a new "
                        "or empty directory, or pass --force to add the pack's files to it (nothing was "
                        "changed)")
    return root


def install_dir(tmp: Path, root: Path) -> None:
    """Put the finished pack `tmp` at `root`, keeping every entry of `root` that `tmp` does not replace.

    For an existing pack only the names it owns (see `pack_entries`) are replaced; for any other
    directory only the names `tmp` brings. Other entries are moved into the new pack first (and
    back again if the swap fails), and the old directory is removed only once it holds nothing
    but the replaced pack files.
    """
    if not root.exists():
        tmp.rename(root)
        return
    owned = pack_entries(root) if is_pack_dir(root) else set()
    replaced = owned | {p.name for p in tmp.iterdir()}
    if _holds_cwd(root):
        return _swap_entries(tmp, root, replaced)
    kept = [e.name for e in sorted(root.iterdir()) if e.name not in replaced]
    moved: list[str] = []
    backup = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old"))
    try:
        for name in kept:
            os.replace(root / name, tmp / name)  # same filesystem: a rename, never a copy
            moved.append(name)
        os.rmdir(backup)
        root.rename(backup)
        try:
            tmp.rename(root)
        except OSError:
            backup.rename(root)
            raise
    except BaseException:
        for name in moved:  # give the user's entries back before the caller discards `tmp`
            if root.is_dir() and not (root / name).exists():
                os.replace(tmp / name, root / name)
        if backup.is_dir() and not any(backup.iterdir()):
            os.rmdir(backup)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _holds_cwd(root: Path) -> bool:
    """True when the process (and likely the user's shell) sits inside `root`: renaming it away would
    leave them in a deleted directory that looks empty."""
    try:
        Path.cwd().resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def _swap_entries(tmp: Path, root: Path, replaced: set[str]) -> None:
    """Replace `root`'s pack entries one rename at a time (the directory itself stays put)."""
    backup = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old"))
    for name in sorted(replaced):
        if (root / name).exists() or (root / name).is_symlink():
            os.replace(root / name, backup / name)
    for entry in sorted(tmp.iterdir()):
        os.replace(entry, root / entry.name)
    os.rmdir(tmp)
    shutil.rmtree(backup, ignore_errors=True)
