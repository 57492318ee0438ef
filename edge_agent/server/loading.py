"""An ASGI front that answers at once while the agent loads in a thread, then hands every request over.

While the model loads, the chat page and its files are served, `/health` answers 503 `loading`, and
every other route a 503 `model_loading` with Retry-After, so a browser or client can say so and
retry. If loading fails, the error is kept for the CLI to print and the server is asked to stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from .page import CSP, HEADERS, STATIC, asset

__all__ = ["LoadingApp"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
RETRY_AFTER_S = 2


class LoadingApp:
    """Wraps `load` (which returns the real FastAPI app); runs the real app's lifespan once it exists."""

    def __init__(self, load: Callable[[], Any], *, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.load = load
        self.on_error = on_error
        self.app: Any = None
        self.error: BaseException | None = None
        self._lifespan: AbstractAsyncContextManager[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._files = {"/": ("text/html; charset=utf-8", asset("index.html"))}
        self._files.update({f"/static/{name}": (kind, asset(name)) for name, kind in STATIC.items()})

    async def _load(self) -> None:
        try:
            app = await asyncio.to_thread(self.load)
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
        except Exception as exc:  # noqa: BLE001 - kept and re-raised by the CLI once the server has stopped
            log.error("loading the agent failed: %s", exc)
            self.error = exc
            if self.on_error is not None:
                self.on_error(exc)
            return
        self._lifespan = lifespan
        self.app = app

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] == "lifespan.startup":
            self._task = asyncio.create_task(self._load())
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        if message["type"] == "lifespan.shutdown":
            if self._task is not None and not self._task.done():
                await asyncio.wait([self._task])  # a model half loaded is finished, then stopped
            if self._lifespan is not None:
                await self._lifespan.__aexit__(None, None, None)
            await send({"type": "lifespan.shutdown.complete"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
            return
        if self.app is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path in self._files and scope.get("method") in ("GET", "HEAD"):
            kind, body = self._files[path]
            headers = {**HEADERS, **({"Content-Security-Policy": CSP} if path == "/" else {})}
            await _respond(send, 200, body, kind, headers)
            return
        failed = self.error is not None
        payload: dict[str, Any]
        if path == "/health":
            payload = {"status": "failed" if failed else "loading"}
        else:
            payload = {"error": {"message": f"the agent failed to load ({self.error}); see the server log" if failed
                              else "the model is still loading; retry in a few seconds",
                              "type": "server_error", "param": None,
                              "code": "load_failed" if failed else "model_loading"}}
        await _respond(send, 503, json.dumps(payload).encode("utf-8"), "application/json",
                       {"Retry-After": str(RETRY_AFTER_S)})


async def _respond(send: Send, status: int, body: bytes, kind: str, headers: dict[str, str]) -> None:
    raw = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
