"""A content-hash cache of LLM calls in SQLite: the same request is never paid for twice.

The key is the sha256 of the canonical JSON of (teacher identity, messages, parameters), where the
identity is the endpoint URL, the model and an explicit id or server fingerprint; values are JSON
(never pickle). Each row also records which run paid for it, so a run's spending can be summed
after a crash. API keys are never part of a request and so never stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CachedCall", "CallCache", "request_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    run_id TEXT NOT NULL,
    paid INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_run ON calls (run_id);
"""


def request_key(teacher: str, messages: Any, params: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a request to one teacher (same request, same key, any machine).

    `teacher` identifies who answers (`Endpoint.identity()`); the student passes its own id.
    """
    blob = json.dumps({"model": teacher, "messages": messages, "params": dict(params)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedCall:
    response: dict[str, Any]
    run_id: str
    paid: bool


class CallCache:
    """SQLite-backed; safe to share between threads of one process and between processes (WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL with WAL: a committed row survives kill -9 (the OS has it); only a power cut
        # may lose the last few, and those calls are then paid again.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> CachedCall | None:
        with self._lock:
            row = self._db.execute("SELECT response, run_id, paid FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return CachedCall(response=json.loads(row[0]), run_id=row[1], paid=bool(row[2]))

    def put(self, key: str, model: str, request: Mapping[str, Any], response: Mapping[str, Any], *,
            run_id: str, paid: bool, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, model, json.dumps(dict(request), ensure_ascii=False, sort_keys=True),
                 json.dumps(dict(response), ensure_ascii=False, sort_keys=True), run_id, int(paid),
                 int(prompt_tokens), int(completion_tokens), time.time()),
            )

    def spent(self, run_id: str) -> dict[str, dict[str, int]]:
        """Paid calls and tokens per model recorded for `run_id` (survives crashes and resumes)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM calls "
                "WHERE run_id = ? AND paid = 1 GROUP BY model", (run_id,)).fetchall()
        return {m: {"calls": int(n), "prompt_tokens": int(p or 0), "completion_tokens": int(c or 0)}
                for m, n, p, c in rows}

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
