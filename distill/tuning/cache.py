"""A call cache for student generations (SQLite), so reruns of tuning and evaluation are free.

At temperature 0 a student's reply is a pure function of (model file, messages, decoding
settings); the key hashes exactly those. Stats of the first run (prompt tokens, time to first
token) are stored with the text, so cached reports still show what each mode costs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_agent.backends import ChatBackend, ChatResult, GenerationConfig, Message, Usage

__all__ = ["CachedChat", "call_key"]


def call_key(model_id: str, messages: Sequence[Message], config: GenerationConfig) -> str:
    payload = {"model": model_id, "messages": [dict(m) for m in messages], "config": asdict(config)}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedChat:
    """Wraps a ChatBackend; identical calls are answered from an SQLite file."""

    def __init__(self, backend: ChatBackend, path: Path | str, model_id: str) -> None:
        self.backend = backend
        self.name = getattr(backend, "name", "cached")
        self.model_id = model_id
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, text TEXT, stats TEXT)")
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.last_stats: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:  # count_tokens and friends pass through
        return getattr(self.backend, name)

    def _get(self, key: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute("SELECT text, stats FROM calls WHERE key = ?", (key,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def _put(self, key: str, text: str, stats: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", (key, text, json.dumps(stats)))
            self._db.commit()

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> Iterator[str]:
        cfg = config or GenerationConfig()
        key = call_key(self.model_id, messages, cfg)
        found = self._get(key)
        if found is not None:
            self.hits += 1
            self.last_stats = {**found[1], "cached": True}
            yield found[0]
            return
        self.misses += 1
        pieces = list(self.backend.stream(messages, cfg))
        text = "".join(pieces)
        stats = {
            k: v
            for k, v in dict(getattr(self.backend, "last_stats", {}) or {}).items()
            if isinstance(v, (int, float, str))
        }
        self._put(key, text, stats)
        self.last_stats = stats
        yield from pieces

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        text = "".join(self.stream(messages, config)).strip()
        s = self.last_stats
        usage = Usage(
            prompt_tokens=int(s.get("prompt_tokens", 0)), completion_tokens=int(s.get("completion_tokens", 0))
        )
        return ChatResult(
            text=text, usage=usage, finish_reason=str(s.get("finish_reason", "stop")), model=self.name
        )

    def close(self) -> None:
        self._db.close()
