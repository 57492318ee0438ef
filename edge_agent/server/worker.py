"""One generation worker: a thread that owns the agent, fed by a bounded queue.

llama.cpp contexts are not thread-safe, so every request runs here, one after another. A full
queue is refused (the app answers 429) instead of growing; a request is stopped between tokens
once its client has gone or its deadline has passed. Each finished job logs one JSON record.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..agent import Agent
from ..backends import GenerationConfig
from ..errors import EdgeAgentError, ModelError
from .context import fit_history
from .schemas import ApiError

__all__ = ["REQUEST_LOG", "Event", "GenerationWorker", "Job", "QueueFull"]

log = logging.getLogger(__name__)
REQUEST_LOG = logging.getLogger("edge_agent.server.requests")

# ("start", {"trimmed": n}) | ("piece", str) | ("done", Job) | ("error", ApiError)
Event = tuple[str, Any]


class QueueFull(Exception):
    """No room in the queue; `retry_after` is a whole number of seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    """One chat request on its way through the worker; `emit` delivers events to the client side."""

    history: list[dict[str, str]]
    generation: GenerationConfig
    emit: Callable[[Event], None]
    timeout: float
    meta: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    outcome: str = "queued"
    reply: Any = None
    hits: list[Any] = field(default_factory=list)
    trimmed: int = 0
    pieces: int = 0
    client_checked: float = 0.0  # monotonic time the HTTP side last asked whether the client is still there

    @property
    def deadline(self) -> float:
        return self.submitted + self.timeout


class GenerationWorker:
    """Runs jobs on one thread; `submit` never blocks and raises QueueFull when there is no room."""

    def __init__(self, agent: Agent, queue_size: int) -> None:
        self.agent = agent
        self.queue_size = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="edge-agent-generate", daemon=True)
        self._running: Job | None = None
        self._stopping = threading.Event()
        self._mean_s = 2.0  # moving average of a job's service time, for Retry-After
        self.counts = {"ok": 0, "cancelled": 0, "timeout": 0, "error": 0, "rejected": 0}

    # --- client side (event loop thread) ----------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        if self._stopping.is_set():
            raise ApiError(503, "the server is shutting down; retry on another instance",
                           type="server_error", code="shutting_down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.counts["rejected"] += 1
            raise QueueFull(self.retry_after()) from None

    def retry_after(self) -> int:
        waiting = self._queue.qsize() + (1 if self._running else 0)
        return max(1, min(60, math.ceil(self._mean_s * max(waiting, 1))))

    def status(self) -> dict[str, Any]:
        return {"queued": self._queue.qsize(), "queue_size": self.queue_size, "busy": self._running is not None,
                "counts": dict(self.counts)}

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, cancel queued and running ones, and wait for the thread to end."""
        self._stopping.set()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._finish(job, "cancelled", ApiError(503, "the server is shutting down", type="server_error",
                                                        code="shutting_down"))
        running = self._running
        if running is not None:
            running.cancel.set()
        self._queue.put(None)
        self._thread.join(timeout)

    # --- worker thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._running = job
            try:
                self._serve(job)
            except Exception as exc:  # never let one request kill the worker
                log.exception("request %s failed", job.meta.get("id"))
                self._finish(job, "error", ApiError(500, f"generation failed: {type(exc).__name__}",
                                                    type="server_error", code="generation_failed"))
            finally:
                self._running = None
                if job.started is not None:
                    self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - job.started)

    def _serve(self, job: Job) -> None:
        if job.cancel.is_set():
            return self._finish(job, "cancelled")
        if time.monotonic() > job.deadline:
            return self._finish(job, "timeout", _timeout_error(job))
        job.started = time.monotonic()
        try:
            history, job.trimmed = fit_history(self.agent, job.history, job.generation.max_tokens)
            stream = self.agent.stream(history, generation=job.generation)
        except ApiError as exc:
            return self._finish(job, "error", exc)
        except EdgeAgentError as exc:
            code = "context_length_exceeded" if isinstance(exc, ModelError) else "invalid_conversation"
            return self._finish(job, "error", ApiError(400, str(exc), param="messages", code=code))
        job.hits = list(getattr(stream, "hits", None) or [])
        job.history = history
        job.emit(("start", {"trimmed": job.trimmed}))
        pieces = iter(stream)
        for piece in pieces:
            job.pieces += 1
            job.emit(("piece", piece))
            if job.cancel.is_set() or time.monotonic() > job.deadline:
                break
        else:
            job.reply = stream.reply
            return self._finish(job, "ok")
        _close(pieces, stream)
        if job.cancel.is_set():
            return self._finish(job, "cancelled")
        return self._finish(job, "timeout", _timeout_error(job))

    def _finish(self, job: Job, outcome: str, error: ApiError | None = None) -> None:
        job.outcome = outcome
        self.counts[outcome if outcome in self.counts else "error"] += 1
        job.emit(("error", error) if error is not None else ("done", job))
        self._log(job, error)

    def _hits_of(self, job: Job) -> list[Any]:
        """The strategies a stopped job was given: the reply stream does not expose them before it ends,
        so they are retrieved again (retrieval is deterministic; only jobs that started pay for it)."""
        if job.started is None or job.outcome not in ("cancelled", "timeout"):
            return []
        try:
            return list(self.agent.retrieve(job.history).hits)
        except Exception as exc:  # the log line must never fail the worker
            log.warning("could not recover the strategies of request %s: %s", job.meta.get("id"), exc)
            return []

    def _log(self, job: Job, error: ApiError | None) -> None:
        now = time.monotonic()
        reply = job.reply
        hits = reply.hits if reply is not None else (job.hits or self._hits_of(job))
        record: dict[str, Any] = {
            **job.meta, "outcome": job.outcome,
            "status": error.status if error else (200 if job.outcome == "ok" else 499),
            "latency_ms": round((now - job.submitted) * 1e3, 1),
            "queue_ms": round(((job.started or now) - job.submitted) * 1e3, 1),
            "prompt_tokens": reply.usage.prompt_tokens if reply else None,
            "completion_tokens": reply.usage.completion_tokens if reply else job.pieces,
            "strategies": [h.strategy.id for h in hits],
            "trimmed": job.trimmed,
        }
        if error is not None:
            record["error"] = error.code
        REQUEST_LOG.info(json.dumps(record, ensure_ascii=False))


def _close(*iterators: Any) -> None:
    """Close the reply generators now, so the student's lock and KV state are released at once
    (not whenever the garbage collector gets to them); `ReplyStream.close` closes the student's."""
    for it in iterators:
        close = getattr(it, "close", None)
        if callable(close):
            close()


def _timeout_error(job: Job) -> ApiError:
    return ApiError(504, f"the request took longer than its {job.timeout:g} s limit; retry later or raise "
                         "request_timeout", type="timeout_error", code="timeout")
