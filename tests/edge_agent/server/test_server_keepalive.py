"""The server keeps idle connections open longer than any Retry-After it sends.

`scripts/load_serve.py` once failed with one unintended ReadError: clients wait the whole-second
Retry-After (often about 5 s) and reuse their connection, while uvicorn closed idle connections
after 5 s, so the reuse raced the close. The connection must survive an idle wait past 5 s.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.server.cli import KEEP_ALIVE_S
from tests.conftest import free_port

pytestmark = pytest.mark.server

REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
BODY = b'{"model": "x", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}'


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def test_retry_after_never_outlives_the_keep_alive() -> None:
    assert KEEP_ALIVE_S > 60  # the worker's Retry-After is capped at 60 s


def test_an_idle_connection_survives_a_retry_after_wait(hash_pack: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "serve",
            "--port",
            str(port),
            "--model",
            "mock",
            "--pack",
            str(hash_pack),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
                    probe.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    if b" 200 " in probe.recv(4096):
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST % (len(BODY), BODY))
            assert b" 200 " in _response(sock)
            time.sleep(6.0)  # longer than uvicorn's default 5 s keep-alive
            sock.sendall(REQUEST % (len(BODY), BODY))
            assert b" 200 " in _response(sock), "the server closed the idle connection"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
