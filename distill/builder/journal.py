"""An append-only JSONL journal of finished work, fsynced per record, for crash-safe resume.

Each line is one event (`{"event": ..., ...}`). A kill can leave at most one partial last line;
`read_journal` drops it (and says so in the log) instead of failing, since it never finished.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edge_agent.errors import ConfigError

__all__ = ["Journal", "read_journal"]

log = logging.getLogger(__name__)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """All complete records; a torn final line (a crash mid-write) is dropped."""
    path = Path(path)
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == len(lines) - 1:
                log.warning("journal %s: dropping a partial last record (the run was interrupted)", path)
                continue
            raise ConfigError(f"journal {path} line {i + 1} is corrupt; restore it from a backup or "
                              "start a new run") from None
        if isinstance(record, dict):
            out.append(record)
    return out


class Journal:
    """Appends events; a write is durable (fsync) before `append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._fh = self.path.open("ab")
        self._lock = threading.Lock()

    def _repair_tail(self) -> None:
        # Cut a torn last line so that the next record starts on a line of its own.
        if not self.path.is_file():
            return
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            with self.path.open("r+b") as fh:
                fh.truncate(cut)
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "at": time.time(), **fields}
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return record

    def records(self) -> list[dict[str, Any]]:
        return read_journal(self.path)

    def iter_event(self, event: str) -> Iterator[Mapping[str, Any]]:
        return (r for r in self.records() if r.get("event") == event)

    def close(self) -> None:
        with self._lock:
            self._fh.close()
