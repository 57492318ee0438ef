"""A content-hash cache of LLM calls in SQLite, and the one wrapper that uses it: never pay twice.

The key is the sha256 of the canonical JSON of (identity, messages, parameters): for a teacher the
endpoint URL, the model and an explicit id or server fingerprint; for a local student its model
file's hash. Values are JSON (never pickle). Each row records which run paid for it, so a run's
spending can be summed after a crash. API keys are never part of a request and so never stored.
`CachedCalls` is look up -> (budget check) -> call -> store -> count for every caller; `CachedChat`
is its `ChatBackend` face for a local model.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.backends import ChatBackend, ChatResult, ChatStream, GenerationConfig, Message, Usage
from edge_agent.errors import ConfigError
from edge_agent.files import home_dir

from .budget import Meter

__all__ = ["CacheKey", "CachedCall", "CachedCalls", "CachedChat", "CallCache", "default_cache_path", "generation_params",
           "request_key", "response_json", "result_of"]

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


def default_cache_path() -> Path:
    """The one call cache every command shares: teacher answers and local students' replies."""
    return home_dir() / "distill" / "cache.sqlite"


def request_key(teacher: str, messages: Any, params: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a request to one teacher (same request, same key, any machine).

    `teacher` identifies who answers (`Endpoint.identity()`); the student passes its own id.
    """
    blob = json.dumps({"model": teacher, "messages": messages, "params": dict(params)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def generation_params(config: GenerationConfig) -> dict[str, Any]:
    """Every decoding setting of a local model's call, as its key hashes them (`stop` as a list)."""
    params = dict(config.__dict__)
    params["stop"] = list(params["stop"])
    return params


def response_json(result: ChatResult) -> dict[str, Any]:
    """What a row keeps of an answer: text, finish reason, token counts, and timings when measured."""
    out: dict[str, Any] = {"text": result.text, "finish_reason": result.finish_reason,
                           "prompt_tokens": result.usage.prompt_tokens,
                           "completion_tokens": result.usage.completion_tokens}
    if result.usage.evaluated_prompt_tokens is not None:
        out["evaluated_prompt_tokens"] = result.usage.evaluated_prompt_tokens
    if result.timings:
        out["timings"] = {k: float(v) for k, v in result.timings.items()}
    return out


def result_of(response: Mapping[str, Any], model: str = "") -> ChatResult:
    """A stored answer as a `ChatResult` (rows written before timings were kept have none)."""
    evaluated = response.get("evaluated_prompt_tokens")
    usage = Usage(int(response.get("prompt_tokens", 0)), int(response.get("completion_tokens", 0)),
                  None if evaluated is None else int(evaluated))
    timings = {str(k): float(v) for k, v in dict(response.get("timings") or {}).items()}
    return ChatResult(text=str(response["text"]), usage=usage, finish_reason=str(response.get("finish_reason", "stop")),
                      model=model, timings=timings)


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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        if columns and "response" not in columns:  # the tuning student cache before it moved here
            self._db.close()
            raise ConfigError(f"{self.path} is a call cache in an older format; delete it (its answers are "
                              "recomputed once) or pass another --cache file")
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


@dataclass(frozen=True)
class CacheKey:
    """One request as the cache knows it: its key, and the record stored beside the answer."""

    key: str
    record: dict[str, Any]

    @classmethod
    def of(cls, identity: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> CacheKey:
        """`identity` names who answers (`Endpoint.identity()`, or a local model's id or sha256)."""
        plain = [dict(m) for m in messages]
        return cls(request_key(identity, plain, params), {"messages": plain, **params})


class CachedCalls:
    """The one cache-and-meter wrapper: look up -> (budget check) -> call -> store -> count usage.

    Counts are per `who` (a role, or a student's name). `paid` rows count against the meter and
    the run's ledger; a local student's rows are stored unpaid. Safe to use from several threads.
    """

    def __init__(self, cache: CallCache | None, *, meter: Meter | None = None, run_id: str = "",
                 paid: bool = True, advice: str | None = None) -> None:
        self.cache = cache
        self.meter = meter
        self.run_id = run_id
        self.paid = paid
        self.advice = advice  # what the budget-stop message tells the person to do
        self.hits: Counter[str] = Counter()
        self.shared: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.hit_runs: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def count(self, who: str) -> tuple[int, int]:
        """(fresh calls, cache hits) made for `who` in this process."""
        with self._lock:
            return self.calls[who], self.hits[who]

    def lookup(self, request: CacheKey, who: str, model: str) -> ChatResult | None:
        """The stored answer for `request` (counted as a cache hit), or None."""
        hit = self.cache.get(request.key) if self.cache is not None else None
        if hit is None:
            return None
        self.record_hit(who, model, hit.run_id)
        return result_of(hit.response, model)

    def record_hit(self, who: str, model: str, run_id: str | None = None) -> None:
        """An answer that cost nothing: from the cache (`run_id` paid for it) or shared in flight."""
        if self.meter is not None:
            self.meter.record_hit(model)
        with self._lock:
            if run_id is None:
                self.shared[who] += 1
            else:
                self.hits[who] += 1
                self.hit_runs.setdefault(who, set()).add(run_id)

    def check(self) -> None:
        """Raise `BudgetExceeded` before a paid call once a limit is reached."""
        if self.paid and self.meter is not None:
            self.meter.check(self.advice)

    def store(self, request: CacheKey, who: str, model: str, result: ChatResult) -> None:
        """Keep a fresh answer (committed before this returns), then count what it cost."""
        usage = result.usage
        if self.cache is not None:
            self.cache.put(request.key, model, request.record, response_json(result), run_id=self.run_id,
                           paid=self.paid,
                           prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        if self.paid and self.meter is not None:
            self.meter.record_paid(model, usage.prompt_tokens, usage.completion_tokens)
        with self._lock:
            self.calls[who] += 1

    def call(self, request: CacheKey, who: str, model: str,
             compute: Callable[[], ChatResult]) -> tuple[ChatResult, bool]:
        """The synchronous face: (answer, whether it came from the cache)."""
        hit = self.lookup(request, who, model)
        if hit is not None:
            return hit, True
        self.check()
        result = compute()
        self.store(request, who, model, result)
        return result, False


class CachedChat:
    """A local model behind the call cache, itself a `ChatBackend` (reruns of tuning cost nothing).

    At temperature 0 a reply is a pure function of (model file, messages, decoding settings); the
    key hashes exactly those. Usage and timings of the first run are stored with the text, so cached
    reports still show what each mode cost.
    """

    def __init__(self, backend: ChatBackend, cache: CallCache | Path | str, model_id: str,
                 *, run_id: str = "tune") -> None:
        self.backend = backend
        self.name = getattr(backend, "name", "cached")
        self.model_id = model_id
        self.cache = cache if isinstance(cache, CallCache) else CallCache(cache)
        self.ledger = CachedCalls(self.cache, run_id=run_id, paid=False)

    def __getattr__(self, name: str) -> Any:  # count_tokens and friends pass through
        return getattr(self.backend, name)

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        cfg = config or GenerationConfig()
        request = CacheKey.of(self.model_id, messages, generation_params(cfg))
        result, _ = self.ledger.call(request, self.name, self.model_id, lambda: self.backend.chat(messages, cfg))
        return ChatResult(text=result.text.strip(), usage=result.usage, finish_reason=result.finish_reason,
                          model=self.name, timings=result.timings)

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        return ChatStream.of(self.chat(messages, config))

    def close(self) -> None:
        self.cache.close()
