"""Helpers for the server tests: a uvicorn server in a thread on 127.0.0.1, fake students, a guard."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn

from edge_agent.backends import ChatResult, ChatStream, GenerationConfig, Message, Usage
from edge_agent.server import ServeConfig, create_app


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve any ASGI app on a free loopback port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextmanager
def running_server(agent: Any, config: ServeConfig | None = None, **overrides: Any) -> Iterator[str]:
    """Serve `agent` on a free loopback port in a thread; yields the base URL (without /v1)."""
    cfg = (config or ServeConfig()).model_copy(update=overrides)
    with serving(create_app(agent, cfg)) as base:
        yield base


class SlowChat:
    """A fake student streaming `words` words, `delay` s apart; records how each stream ended.

    With `gate`, the first word waits until the event is set (a request held "running").
    """

    def __init__(self, words: int = 50, delay: float = 0.02, gate: threading.Event | None = None) -> None:
        self.name = "slow"
        self.words = words
        self.delay = delay
        self.gate = gate
        self.ended: list[str] = []  # "done" or "closed", per stream
        self.calls: list[list[dict[str, str]]] = []

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        limit = min(self.words, (config or GenerationConfig()).max_tokens)
        done: list[ChatResult] = []

        def words() -> Iterator[str]:
            self.calls.append([dict(m) for m in messages])
            sent = 0
            try:
                if self.gate is not None:
                    self.gate.wait(30)
                for i in range(limit):
                    time.sleep(self.delay)
                    sent += 1
                    yield "w" if i == 0 else " w"
                done.append(ChatResult("w" + " w" * (sent - 1) if sent else "", Usage(10, sent, 4),
                                       finish_reason="length" if limit < self.words else "stop", model=self.name))
                self.ended.append("done")
            except GeneratorExit:
                self.ended.append("closed")
                raise

        return ChatStream(words(), lambda _text: done[0])

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        text = "".join(self.stream(messages, config))
        return ChatResult(text=text, usage=Usage(10, self.words))


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll `condition` every 20 ms until it is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@contextmanager
def loopback_only() -> Iterator[list[Any]]:
    """Patch socket connects so any non-loopback address fails and is recorded."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def allowed(address: Any) -> bool:
        if isinstance(address, (str, bytes)):  # unix socket
            return True
        host = str(address[0])
        return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")

    def connect(self: socket.socket, address: Any) -> Any:
        if not allowed(address):
            attempts.append(address)
            raise OSError(f"test blocked a non-loopback connection to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if not allowed(address):
            attempts.append(address)
            return 111
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
