"""Hostile requests to the server (issue 13 items 9, 16, 17, 20): 4xx not 500, stopped work stays stopped."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from tests.server_support import SlowChat, loopback_only, running_server, wait_for

CUSTOMER = [{"role": "user", "content": "my internet is down since yesterday"}]
HTTP = httpx.Client(timeout=20)


@pytest.fixture(autouse=True)
def no_outside_network() -> Iterator[None]:
    with loopback_only() as attempts:
        yield
    assert attempts == []


def post(base: str, body: bytes) -> httpx.Response:
    return HTTP.post(base + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("body, code", [
    (b'{"messages": [{"role": "user", "content": "hi \\ud800 there"}]}', "invalid_text"),
    (b'{"messages": [{"role": "user", "content": "ok"}], "stop": ["\\udfff"]}', "invalid_text"),
    (b'{"messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "invalid_json"),
    (b'{"messages": [{"role": "user", "content": "x"}], "a": ' + b'{"b":' * 5_000 + b"1" + b"}" * 5_000 + b"}",
     "invalid_json"),
])
def test_unencodable_or_deep_bodies_are_400(hash_pack: Path, body: bytes, code: str) -> None:
    agent = Agent.from_pack(hash_pack, student=ScriptedChat(default="ok"))
    with running_server(agent, max_body_bytes=1 << 20) as base:
        response = post(base, body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == code
        assert post(base, json.dumps({"messages": CUSTOMER}).encode()).status_code == 200  # still serving


def test_non_streamed_request_stops_when_its_client_leaves(hash_pack: Path, caplog: pytest.LogCaptureFixture) -> None:
    slow = SlowChat(words=400, delay=0.02)  # 8 s if it ran to the end
    agent = Agent.from_pack(hash_pack, student=slow)
    caplog.set_level("INFO", logger="edge_agent.server.requests")
    with running_server(agent) as base:
        host, port = base.removeprefix("http://").split(":")
        body = json.dumps({"messages": CUSTOMER, "max_tokens": 400}).encode()
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_for(lambda: slow.calls)
        time.sleep(0.5)
        sock.close()  # the client gives up, as a script with a 1 s timeout would
        start = time.monotonic()
        wait_for(lambda: slow.ended == ["closed"], timeout=5)
        stopped_after = time.monotonic() - start
        nxt = HTTP.post(base + "/v1/chat/completions", json={"messages": CUSTOMER, "max_tokens": 3})
    assert nxt.status_code == 200
    assert stopped_after < 2.0, f"generation went on {stopped_after:.1f} s after the client left"
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "edge_agent.server.requests"]
    cancelled = [r for r in records if r.get("outcome") == "cancelled"]
    served = [r for r in records if r.get("outcome") == "ok"]
    # item 20: a stopped request names the strategies it was given, as a finished one does
    assert cancelled and cancelled[0]["strategies"] == served[0]["strategies"] and served[0]["strategies"]


def test_timed_out_request_logs_its_strategies(hash_pack: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent.from_pack(hash_pack, student=SlowChat(words=400, delay=0.01))
    caplog.set_level("INFO", logger="edge_agent.server.requests")
    with running_server(agent, request_timeout=0.3) as base:
        assert HTTP.post(base + "/v1/chat/completions", json={"messages": CUSTOMER}).status_code == 504
        wait_for(lambda: any('"timeout"' in r.getMessage() for r in caplog.records))
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "edge_agent.server.requests"]
    timed_out = [r["strategies"] for r in records if r.get("outcome") == "timeout"]
    assert len(timed_out) == 1 and timed_out[0][0] == "t-000"


def test_serve_passes_the_chat_template_path(tmp_path: Path, hash_pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agent.server import ServeConfig
    from edge_agent.server.app import build_agent

    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    seen: dict[str, Any] = {}

    def fake_from_pack(pack: Any, model: Any, **kw: Any) -> str:
        seen.update(kw)
        return "agent"

    monkeypatch.setattr(Agent, "from_pack", staticmethod(fake_from_pack))
    build_agent(ServeConfig(pack=hash_pack, chat_template=template))
    assert Path(seen["chat_template"]) == template  # a path, as from_pack and resolve_model expect


@pytest.mark.real
def test_serve_chat_template_reaches_the_real_student(tmp_path: Path, hash_pack: Path) -> None:
    from edge_agent.server import ServeConfig
    from edge_agent.server.app import build_agent

    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}<|im_start|>assistant\nMARKER")
    agent = build_agent(ServeConfig(pack=hash_pack, chat_template=template, n_ctx=512))
    prompt, _, _ = agent.student.format_prompt([{"role": "user", "content": "hi"}])
    assert prompt.endswith("MARKER")
