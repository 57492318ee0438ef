"""Calls to the teacher-side roles: cache first, then budget check, bounded concurrency, accounting.

The async face of `CachedCalls`: each role's backend is a plain `ChatBackend` (blocking), run in a
daemon thread per call, so up to `concurrency` calls are in flight while the loop goes on.

The cache key names the teacher, not just the model: endpoint URL, model, and an explicit
`teacher_id` or the fingerprint the server reports, so a swapped model is never answered from
another one's cache.

`Caller.text` returns a reply; `Caller.structured` asks for JSON, validates it with a pydantic model
and sends the model a repair request a bounded number of times before giving up with
`StructuredFailure` (the caller records the unit as failed and the run goes on).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from edge_agent.backends import ChatBackend, ChatResult, Usage

from ..config import Endpoint
from .budget import Meter
from .cache import CachedCalls, CacheKey, CallCache
from .openai_chat import ChatRequest, ask
from .schemas import MalformedOutput, json_schema, parse_output, repair_messages

__all__ = ["CallResult", "Caller", "StructuredFailure"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a blocking call in a daemon thread; an interrupted run exits without waiting for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, failed: bool) -> None:
        if not future.done():
            future.set_exception(value) if failed else future.set_result(value)

    def work() -> None:
        try:
            value: Any = fn()
            failed = False
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task, never lost in the thread
            value, failed = exc, True
        try:
            loop.call_soon_threadsafe(settle, value, failed)
        except RuntimeError:
            pass  # the loop is already closed: nobody waits for this answer any more

    threading.Thread(target=work, name="distill-call", daemon=True).start()
    return future


class StructuredFailure(Exception):
    """A role kept returning output that is not the requested JSON."""


@dataclass(frozen=True)
class CallResult:
    text: str
    usage: Usage
    finish_reason: str
    cached: bool


def response_format(endpoint: Endpoint, model: type[BaseModel] | None,
                    schema: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    if model is None or endpoint.json_mode == "off":
        return None
    if endpoint.json_mode == "object":
        return {"type": "json_object"}
    schema = dict(schema or json_schema(model))
    if endpoint.json_mode == "schema":
        return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema}}
    return {"type": "json_object", "schema": schema}  # "grammar": llama.cpp's schema-constrained JSON


def _parse(out: CallResult, model: type[M]) -> M:
    try:
        return parse_output(out.text, model)
    except MalformedOutput:
        if out.finish_reason == "length":
            raise MalformedOutput("the reply was cut off at max_tokens (truncated)") from None
        raise


class Caller:
    """Routes each role to its backend; shares one cache, one meter and one concurrency limit."""

    def __init__(self, endpoints: Mapping[str, Endpoint], backends: Mapping[str, ChatBackend], *,
                 cache: CallCache | None, meter: Meter, run_id: str, concurrency: int = 4,
                 json_retries: int = 2, on_call: Callable[[str, bool], None] | None = None) -> None:
        self.endpoints = dict(endpoints)
        self.backends = dict(backends)
        self.meter = meter
        self.json_retries = json_retries
        self.on_call = on_call
        self.ledger = CachedCalls(cache, meter=meter, run_id=run_id)
        self._limit = asyncio.Semaphore(concurrency)
        # Server-reported fingerprints per role (see `identify`); part of every cache key.
        self.fingerprints: dict[str, str] = {}
        # Identical requests in flight at once share one paid call.
        self._inflight: dict[str, asyncio.Future[CallResult]] = {}
        self._pending: set[asyncio.Future[ChatResult]] = set()

    async def identify(self) -> dict[str, str]:
        """Ask each backend that can tell (`fingerprint()`) what model it serves, once per endpoint.

        Roles with an explicit `teacher_id` are not asked. A server that cannot tell gives "", so
        its cache entries are keyed by URL and model alone and never match a fingerprinted entry.
        """
        asked: dict[tuple[str, str], str] = {}
        for role, ep in self.endpoints.items():
            probe = getattr(self.backends.get(role), "fingerprint", None)
            if ep.teacher_id or probe is None:
                continue
            where = (ep.base_url, ep.model)
            if where not in asked:
                asked[where] = await in_thread(probe)
            self.fingerprints[role] = asked[where]
        return dict(self.fingerprints)

    def identity(self, role: str) -> str:
        return self.endpoints[role].identity(self.fingerprints.get(role, ""))

    def teacher_label(self, role: str) -> str:
        """A person's name for who answers a role: model, URL, and the id or fingerprint."""
        ep = self.endpoints[role]
        fp = self.fingerprints.get(role, "")
        tail = f" (id {ep.teacher_id})" if ep.teacher_id else (f" (fingerprint {fp[:12]})" if fp else "")
        return f"{ep.model} at {ep.base_url}{tail}"

    def cache_report(self) -> dict[str, Any]:
        """How many answers came from the cache in this process, and from which teacher."""
        labels = {r: self.teacher_label(r) for r in self.endpoints}
        by: dict[str, dict[str, Any]] = {}
        for role, label in labels.items():
            row = by.setdefault(label, {"teacher": label, "roles": [], "cache_hits": 0, "paid_calls": 0,
                                        "cached_from_runs": []})
            row["roles"].append(role)
            paid, hits = self.ledger.count(role)
            row["cache_hits"] += hits
            row["paid_calls"] += paid
            row["cached_from_runs"] = sorted({*row["cached_from_runs"], *self.ledger.hit_runs.get(role, set())})
        led = self.ledger
        return {"hits": sum(led.hits.values()), "paid_calls": sum(led.calls.values()),
                "shared_in_flight": sum(led.shared.values()),
                "by_teacher": [r for r in by.values() if r["cache_hits"] or r["paid_calls"]]}

    async def _call(self, role: str, messages: Sequence[Mapping[str, str]],
                    fmt: Mapping[str, Any] | None) -> CallResult:
        ep = self.endpoints[role]
        request = ChatRequest(messages=[dict(m) for m in messages], temperature=ep.temperature,
                              max_tokens=ep.max_tokens, response_format=fmt)
        key = CacheKey.of(self.identity(role), request.messages, request.params())
        hit = self.ledger.lookup(key, role, ep.model)
        if hit is not None:
            if self.on_call:
                self.on_call(role, True)
            return CallResult(text=hit.text, usage=Usage(hit.usage.prompt_tokens, hit.usage.completion_tokens),
                              finish_reason=hit.finish_reason, cached=True)
        shared = self._inflight.get(key.key)
        if shared is not None:
            first = await asyncio.shield(shared)
            self.ledger.record_hit(role, ep.model)
            return CallResult(text=first.text, usage=first.usage, finish_reason=first.finish_reason, cached=True)
        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception not retrieved"
        self._inflight[key.key] = future
        try:
            out = await self._paid(role, ep, key, request)
        except Exception as exc:
            future.set_exception(exc)
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._inflight.pop(key.key, None)
        future.set_result(out)
        return out

    async def _paid(self, role: str, ep: Endpoint, key: CacheKey, request: ChatRequest) -> CallResult:
        async with self._limit:
            self.ledger.check()
            # Shielded: if the run is stopping (budget, a failed endpoint), a request already sent
            # still gets its answer stored, so it is never paid for twice. `drain` waits for these.
            inner = in_thread(lambda: self._complete_and_store(role, ep, key, request))
            self._pending.add(inner)
            inner.add_done_callback(self._pending.discard)
            result = await asyncio.shield(inner)
        if self.on_call:
            self.on_call(role, False)
        return CallResult(text=result.text, usage=result.usage, finish_reason=result.finish_reason, cached=False)

    def _complete_and_store(self, role: str, ep: Endpoint, key: CacheKey, request: ChatRequest) -> ChatResult:
        """In the call's thread: the paid answer is committed before anyone is told it exists."""
        result = ask(self.backends[role], request)
        self.ledger.store(key, role, ep.model, result)
        return result

    async def drain(self) -> None:
        """Wait until every request already sent has been answered and stored (or has failed)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def text(self, role: str, messages: Sequence[Mapping[str, str]]) -> CallResult:
        return await self._call(role, messages, None)

    async def structured(self, role: str, messages: Sequence[Mapping[str, str]], model: type[M],
                         schema: Mapping[str, Any] | None = None) -> M:
        """Parse the role's reply as `model`; on bad output ask again (at most `json_retries` times).

        `schema` (default: the model's) is what schema-aware JSON modes send; a tighter one bounds
        what a constrained decoder can produce.
        """
        fmt = response_format(self.endpoints[role], model, schema)
        base = [dict(m) for m in messages]
        current = base
        reason = ""
        for attempt in range(self.json_retries + 1):
            out = await self._call(role, current, fmt)
            try:
                return _parse(out, model)
            except MalformedOutput as exc:
                reason = str(exc)
                log.info("%s: malformed %s (attempt %d): %s", role, model.__name__, attempt + 1, reason)
                current = repair_messages(base, out.text, reason)
        raise StructuredFailure(f"{role} gave no valid {model.__name__} after {self.json_retries + 1} tries: {reason}")
