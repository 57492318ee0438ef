"""The chat page of `edge-agent serve`: its files (fast), and the page driven in headless Chromium.

The browser tests type into the real page, watch the reply stream in and the side panel fill, and
check that markup in a customer line, a strategy or a panel field is shown as text and never runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.bundle import install_bundle, write_bundle
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import PackError
from edge_agent.pack import PackSettings, build_pack
from edge_agent.server import ServeConfig, create_app
from edge_agent.server.loading import LoadingApp
from edge_agent.server.page import CSP
from tests.browser_support import Browser
from tests.conftest import free_port, make_strategies
from tests.server_support import SlowChat, loopback_only, running_server, serving

STATIC = Path(__file__).resolve().parents[2] / "edge_agent" / "server" / "static"
SCRIPT = "<script>window.__pwned = 'script'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"
CUSTOMER = f"{SCRIPT}{IMG} my internet is down since yesterday"
KEY = "page-test-key-123"


@pytest.fixture(autouse=True)
def no_outside_network() -> Iterator[None]:
    with loopback_only() as attempts:
        yield
    assert attempts == [], f"non-loopback connections attempted: {attempts}"


@pytest.fixture
def hostile_pack(tmp_path: Path) -> Path:
    """A pack whose internet-outage strategy carries markup in its guidance and scenario."""
    strategies = make_strategies(8)
    strategies[0] = dataclasses.replace(strategies[0], compact=f"Apologise. {SCRIPT}{IMG} Offer a credit.",
                                        scenario=strategies[0].scenario + " " + IMG)
    return build_pack(tmp_path / "pack", strategies, HashEmbedder(dim=32),
                      domain={"name": "test", "company": "Testnet", "system_prompt": "You help customers."},
                      settings=PackSettings(retrieval={"threshold": 0.2, "top_k": 2})).path


# --- fast tier: the files and routes ----------------------------------------------------------


def test_page_files_are_self_contained_and_text_only() -> None:
    js = (STATIC / "chat.js").read_text()
    for name in ("index.html", "chat.js", "chat.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://|//cdn|@import|url\(", text), f"{name} reaches outside the server"
    # the page puts text into the DOM as text only, and keeps the key in memory only
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                   "localStorage", "sessionStorage", "document.cookie", "setAttribute(\"on"):
        assert banned not in js, banned
    assert js.count("textContent") >= 5


def test_routes_headers_and_key_requirement(hostile_pack: Path) -> None:
    agent = Agent.from_pack(hostile_pack, student=ScriptedChat(default="ok"))
    with running_server(agent) as base:
        page = httpx.get(base + "/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP and "script-src 'self'" in CSP
        assert '<script src="static/chat.js"' in page.text
        js = httpx.get(base + "/static/chat.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert js.text == (STATIC / "chat.js").read_text()
        assert httpx.get(base + "/static/chat.css").headers["content-type"].startswith("text/css")
        for bad in ("/static/index.html", "/static/..%2Fpage.py", "/static/nope.js"):
            assert httpx.get(base + bad).status_code == 404, bad
        assert httpx.get(base + "/ui/info").json() == {"key_required": False, "model": "scripted",
                                                        "company": "Testnet"}
        strategy = httpx.get(base + "/ui/strategy/t-000").json()
        assert strategy["compact"].startswith("Apologise. <script>")
        assert httpx.get(base + "/ui/strategy/nope").status_code == 404
    with running_server(agent, api_key=KEY) as base:
        assert httpx.get(base + "/").status_code == 200  # the page itself holds nothing secret
        assert httpx.get(base + "/ui/info").json()["key_required"] is True
        assert httpx.get(base + "/ui/strategy/t-000").status_code == 401
        ok = httpx.get(base + "/ui/strategy/t-000", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


# --- browser tier ------------------------------------------------------------------------------

LAST_REPLY = "document.querySelector('#log .msg.assistant:last-child .text')"
NO_MARKUP = ("document.querySelectorAll('#log img, #log script, #panel img, #panel script, #panel b, #panel i')"
             ".length === 0 && window.__pwned === undefined")


def _send(browser: Browser, text: str) -> None:
    browser.type_text("#input", text)
    browser.click("#send")


def _non_blank(png: Path) -> float:
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    return float(np.mean(np.any(pixels < 0.9, axis=-1)))


@pytest.mark.server
def test_chat_streams_fills_the_panel_and_never_runs_markup(hostile_pack: Path, tmp_path: Path) -> None:
    slow = SlowChat(words=40, delay=0.03)
    agent = Agent.from_pack(hostile_pack, student=slow)
    with running_server(agent) as base, Browser(tmp_path / "profile") as browser:
        browser.goto(base + "/")
        browser.wait_for("document.getElementById('title').textContent === 'Testnet support'")
        assert browser.evaluate("document.getElementById('keybar').hidden") is True  # loopback: no key
        _send(browser, CUSTOMER)
        # streamed: part of the reply is on the page while the request is still running
        partial = browser.wait_for(f"window.edgeAgentChat.busy() && {LAST_REPLY} && "
                                   f"{LAST_REPLY}.textContent.length > 0 && {LAST_REPLY}.textContent", timeout=20)
        assert 0 < len(partial.split()) < 40
        browser.wait_for("!window.edgeAgentChat.busy()", timeout=30)
        reply = browser.evaluate(f"{LAST_REPLY}.textContent")
        assert reply.split() == ["w"] * 40
        customer = browser.evaluate("document.querySelector('#log .msg.user .text').textContent")
        assert customer == CUSTOMER  # shown as the literal text the customer typed
        # the panel: strategies with scores and their (hostile) text, timings
        browser.wait_for("document.querySelector('#panel .strategies .body') && "
                         "document.querySelector('#panel .strategies .body').textContent.length > 0", timeout=10)
        panel = browser.evaluate("document.getElementById('panel-body').textContent")
        assert "t-000" in panel and re.search(r"0\.\d{3}", panel)
        assert "Apologise. <script>window.__pwned = 'script'</script><img" in panel
        assert "retrieval total" in panel and re.search(r"total\d+\.\d ms", panel)
        assert browser.evaluate(NO_MARKUP) is True
        png = browser.screenshot(tmp_path / "page.png")
        assert 0.02 < _non_blank(png) < 0.9
        # a second turn carries the history; Reset forgets it
        _send(browser, "and the router lights are blinking orange")
        browser.wait_for("document.querySelectorAll('#log .msg.assistant:not(.pending)').length === 2", timeout=30)
        assert [m["role"] for m in slow.calls[-1]][-3:] == ["user", "assistant", "user"]
        assert browser.evaluate("document.querySelector('#panel-body .details p').textContent").startswith("Reply 2")
        browser.click("#log .msg.assistant")  # the first reply: its own panel comes back
        assert browser.evaluate("document.querySelector('#panel-body .details p').textContent").startswith("Reply 1")
        assert browser.evaluate("document.querySelector('#log .msg.assistant').classList.contains('selected')")
        browser.click("#reset")
        assert browser.evaluate("document.querySelectorAll('#log .msg').length") == 0
        assert browser.exceptions() == []


@pytest.mark.server
def test_panel_renders_planner_fields_as_text(hostile_pack: Path, tmp_path: Path) -> None:
    """route, reason, facts and candidates (from the turn planner) appear, as text, when present."""
    ext = {"route": "clarify", "reason": f"order number missing {IMG}", "strategy_id": "t-000",
           "facts": {"order_id": SCRIPT, "verified": True}, "mode": "compact",
           "candidates": [{"id": "<b>c-1</b>", "score": 0.71, "verdict": "rejected: <i>promises a refund</i>"}],
           "strategies": [{"id": "t-000", "score": 0.5}], "timings_ms": {"total_ms": 12.5, "decode_tps": 80.0},
           "novel_key": {"x": "<i>y</i>"}}
    agent = Agent.from_pack(hostile_pack, student=ScriptedChat(default="ok"))
    with running_server(agent) as base, Browser(tmp_path / "profile") as browser:
        browser.goto(base + "/")
        text = browser.evaluate(f"(() => {{ const n = window.edgeAgentChat.renderPanel({json.dumps(ext)}, 3); "
                                "document.getElementById('panel-body').replaceChildren(n); return n.textContent; })()")
        for shown in ("clarify", f"order number missing {IMG}", "order_id", SCRIPT, "verified", "yes",
                      "<b>c-1</b>", "0.710", "rejected: <i>promises a refund</i>", "12.5 ms", "80.0 tok/s",
                      "novel_key", "Reply 3", "answered from strategy t-000"):
            assert shown in text, shown
        assert browser.evaluate("document.querySelector('#panel .route').className") == "route clarify"
        browser.wait_for("document.querySelector('#panel .strategies .body').textContent.length > 0")
        assert browser.evaluate(NO_MARKUP) is True
        assert browser.exceptions() == []


@pytest.mark.server
def test_key_and_busy_states(hostile_pack: Path, tmp_path: Path) -> None:
    gate = threading.Event()
    slow = SlowChat(words=3, delay=0.0, gate=gate)
    agent = Agent.from_pack(hostile_pack, student=slow)
    body = {"model": "m", "messages": [{"role": "user", "content": "hold"}]}
    held: list[int] = []
    with running_server(agent, queue_size=1, api_key=KEY) as base, Browser(tmp_path / "profile") as browser:
        browser.goto(base + "/")
        browser.wait_for("!document.getElementById('keybar').hidden")  # a key is needed: the page asks
        _send(browser, "my bill is wrong")
        browser.wait_for("document.getElementById('banner-text').textContent.includes('API key')")
        assert browser.evaluate("document.querySelectorAll('#log .msg').length") == 0
        # a wrong key: refused, said so, and the customer's text is still in the box
        browser.type_text("#key", "wrong-key-0000")
        browser.click("#keybar button")
        browser.evaluate("document.getElementById('input').value = ''")
        _send(browser, "my bill is wrong")
        browser.wait_for("document.getElementById('banner-text').textContent.includes('refused')")
        assert browser.evaluate("document.getElementById('input').value") == "my bill is wrong"
        assert browser.evaluate("!document.getElementById('keybar').hidden") is True
        # the right key, kept in memory only
        browser.type_text("#key", KEY)
        browser.click("#keybar button")
        assert browser.evaluate("document.getElementById('key').value") == ""
        assert browser.evaluate("localStorage.length + sessionStorage.length + document.cookie.length") == 0
        # fill the server: one request running (held at the gate), one waiting
        auth = {"Authorization": f"Bearer {KEY}"}
        threads = [threading.Thread(target=lambda: held.append(httpx.post(base + "/v1/chat/completions", json=body,
                                                                          headers=auth, timeout=30).status_code))
                   for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        browser.click("#send")
        browser.wait_for("document.getElementById('banner-text').textContent.includes('busy')")
        banner = browser.evaluate("document.getElementById('banner-text').textContent")
        assert re.search(r"Retry in \d+ s", banner), banner
        assert browser.evaluate("document.getElementById('input').value") == "my bill is wrong"
        gate.set()
        for t in threads:
            t.join(30)
        assert held == [200, 200]
        browser.wait_for("!document.getElementById('banner-retry').hidden", timeout=70)
        browser.click("#banner-retry")
        browser.wait_for("document.querySelectorAll('#log .msg.assistant:not(.pending)').length === 1", timeout=30)
        assert browser.evaluate(f"{LAST_REPLY}.textContent") == "w w w"
        assert browser.exceptions() == []


@pytest.mark.server
def test_server_gone_then_back(hostile_pack: Path, tmp_path: Path) -> None:
    """`edge-agent serve` itself (a subprocess) serves the page; when it goes away the page says so."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # EDGE_AGENT_HOME is this test's own home
    cmd = [sys.executable, "-m", "edge_agent.cli", "serve", "--model", "mock", "--pack", "desk",
           "--port", str(port), "--log-level", "warning"]
    # the pack is found by its installed name
    install_bundle(write_bundle(hostile_pack, tmp_path / "desk.eapack", name="desk").path)

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return proc
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"edge-agent serve did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)

    proc = start()
    try:
        with Browser(tmp_path / "profile") as browser:
            browser.goto(f"http://127.0.0.1:{port}/")
            browser.wait_for("document.getElementById('model').textContent === 'model mock'")
            _send(browser, CUSTOMER)
            browser.wait_for(f"!window.edgeAgentChat.busy() && {LAST_REPLY}.textContent.startsWith('Thanks')")
            proc.terminate()
            proc.wait(20)
            _send(browser, "are you there?")
            browser.wait_for("document.getElementById('banner-text').textContent.includes('Cannot reach')")
            assert browser.evaluate("document.getElementById('input').value") == "are you there?"
            proc = start()
            browser.wait_for("document.getElementById('banner-text').textContent.includes('back')", timeout=20)
            browser.click("#banner-retry")
            browser.wait_for("document.querySelectorAll('#log .msg.assistant:not(.pending)').length === 2")
            assert browser.evaluate(NO_MARKUP) is True
            assert browser.exceptions() == []
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.real
@pytest.mark.server
def test_real_student_answers_in_the_page(hash_pack: Path, tmp_path: Path) -> None:
    agent = Agent.from_pack(hash_pack, None, prompting={"mode": "compact"}, generation={"max_tokens": 40})
    with running_server(agent, config=ServeConfig()) as base, Browser(tmp_path / "profile") as browser:
        browser.goto(base + "/")
        _send(browser, "My internet has been down since yesterday.")
        browser.wait_for(f"!window.edgeAgentChat.busy() && {LAST_REPLY} && "
                         f"!document.querySelector('#log .msg.assistant:last-child').classList.contains('pending')",
                         timeout=120)
        reply = browser.evaluate(f"{LAST_REPLY}.textContent")
        assert len(reply.split()) >= 3, reply
        panel = browser.evaluate("document.getElementById('panel-body').textContent")
        assert "first token" in panel and "decode speed" in panel
        assert browser.exceptions() == []


@pytest.mark.server
def test_page_while_the_model_loads(hostile_pack: Path, tmp_path: Path) -> None:
    gate = threading.Event()
    agent = Agent.from_pack(hostile_pack, student=ScriptedChat(default="ready now"))

    def load() -> Any:
        gate.wait(60)
        return create_app(agent, ServeConfig())

    with serving(LoadingApp(load)) as base, Browser(tmp_path / "profile") as browser:
        health = httpx.get(base + "/health")
        assert health.status_code == 503 and health.json() == {"status": "loading"}
        early = httpx.post(base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert early.status_code == 503 and early.json()["error"]["code"] == "model_loading"
        assert early.headers["retry-after"] == "2"
        page = httpx.get(base + "/")
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        browser.goto(base + "/")
        browser.wait_for("document.getElementById('banner-text').textContent.includes('still loading')")
        assert browser.evaluate("document.getElementById('send').disabled") is True
        browser.type_text("#input", "my internet is down")
        gate.set()
        browser.wait_for("document.getElementById('banner-text').textContent.includes('ready')", timeout=20)
        browser.wait_for("document.getElementById('title').textContent === 'Testnet support'")
        browser.click("#send")
        browser.wait_for(f"!window.edgeAgentChat.busy() && {LAST_REPLY} && {LAST_REPLY}.textContent === 'ready now'",
                         timeout=20)
        assert httpx.get(base + "/health").json()["status"] == "ok"
        assert browser.exceptions() == []


def test_failed_load_is_reported_and_stops(tmp_path: Path) -> None:
    stopped: list[BaseException] = []

    def load() -> Any:
        raise PackError(f"pack directory {tmp_path / 'nope'} not found; build one with: edge-agent pack build")

    app = LoadingApp(load, on_error=stopped.append)
    with serving(app) as base:
        deadline = time.monotonic() + 10
        while not stopped and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(base + "/health").json() == {"status": "failed"}
        answer = httpx.post(base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "load_failed"
        assert "not found; build one" in answer.json()["error"]["message"]
    assert isinstance(app.error, PackError) and stopped == [app.error]


@pytest.mark.server
def test_serve_with_a_bad_pack_exits_with_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "edge_agent.cli", "serve", "--model", "mock", "--pack", "no-such-pack",
                          "--port", str(free_port())], capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith(("Error:", "error:"))]
    assert len(errors) == 1 and "no installed pack of that name" in errors[0], out.stderr
    assert "Traceback" not in out.stderr
