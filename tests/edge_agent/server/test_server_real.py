"""The server with the real SmolLM2 GGUF and the real ONNX embedder, through the official `openai` client.

The pack is the demo library embedded with the real ONNX MiniLM (not the hash fake): the extension
field reports cosine scores, and only the embedder the product ships makes those scores, and the
claim "a paraphrase retrieves the right strategy", mean anything. The fast tier covers plumbing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from edge_agent.agent import Agent
from edge_agent.domain import load_domain
from edge_agent.embedder import OnnxEmbedder
from edge_agent.library import read_library
from edge_agent.pack import PackSettings, build_pack
from tests.conftest import REPO
from tests.edge_agent.server.test_server_app import BAD
from tests.server_support import loopback_only, running_server

pytestmark = [pytest.mark.real, pytest.mark.server]

DEMO = REPO / "edge_agent" / "demo"
HTTP = httpx.Client(timeout=60)
OUTAGE = [{"role": "user", "content": "I've had no connection at all since last night and I work from home."}]


def client(base: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, http_client=HTTP)


@pytest.fixture(scope="module")
def real_pack(tmp_path_factory: pytest.TempPathFactory, onnx_embedder_dir: Path) -> Path:
    domain = load_domain(DEMO / "domain.toml")
    # compact pins token-by-token streaming from the student: the demo's adapt mode may answer with a
    # whole exemplar at once, which would leave nothing to stream or to cancel mid-way
    settings = PackSettings(retrieval=domain.settings.get("retrieval", {}), prompting={"mode": "compact"},
                            generation=domain.settings.get("generation", {}))
    out = tmp_path_factory.mktemp("realpack") / "pack"
    return build_pack(out, read_library(DEMO / "library.jsonl"), OnnxEmbedder(onnx_embedder_dir),
                      embedder_dir=onnx_embedder_dir, domain=domain.to_manifest(), settings=settings).path


@pytest.fixture(scope="module")
def agent(real_pack: Path, student_path: Path) -> Agent:
    # A 1024-token window (the model allows 2048) keeps the trimming test's prefill short on 2 cores.
    # compact: a mode that always runs the student (the demo's adapt mode may answer without it)
    return Agent.from_pack(real_pack, str(student_path), n_ctx=1024, prompting={"mode": "compact"})


@pytest.fixture(scope="module")
def base(agent: Agent) -> Iterator[str]:
    with running_server(agent, max_body_bytes=200_000) as url:
        yield url


@pytest.fixture(autouse=True)
def no_outside_network() -> Iterator[None]:
    with loopback_only() as attempts:
        yield
    assert attempts == [], f"non-loopback connections attempted: {attempts}"


def test_non_streaming_usage_and_strategies(base: str, agent: Agent) -> None:
    out = client(base).chat.completions.create(model="smollm2", messages=OUTAGE, max_tokens=48)  # type: ignore[arg-type]
    assert out.choices[0].message.content and out.choices[0].finish_reason in ("stop", "length")
    usage = out.usage
    assert usage is not None and usage.prompt_tokens > 50 and 0 < usage.completion_tokens <= 48
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    ext = out.model_extra["edge_agent"]
    # the server's retrieval is the agent's: same ids and scores as retrieving directly
    direct = [{"id": h.strategy.id, "score": round(h.score, 4)} for h in agent.retrieve(OUTAGE).hits]
    assert ext["strategies"] == direct
    # a paraphrase sharing few words with it still finds the outage strategy (a real embedder)
    assert ext["strategies"][0]["id"] == "demo-001" and ext["strategies"][0]["score"] > 0.5
    assert "GUIDANCE" not in out.choices[0].message.content


def test_streaming_chunks_usage_and_final_extension(base: str) -> None:
    chunks = list(client(base).chat.completions.create(model="smollm2", messages=OUTAGE, max_tokens=32,
                                                       stream=True))  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and len(chunks) > 3
    assert [bool((c.model_extra or {}).get("edge_agent")) for c in chunks][:-1] == [False] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.model_extra["edge_agent"]["strategies"][0]["id"] == "demo-001"
    assert last.usage is not None and 0 < last.usage.completion_tokens <= 32
    assert last.choices[0].finish_reason in ("stop", "length")


def test_auth_on_and_off(agent: Agent, base: str) -> None:
    assert client(base).models.list().data  # off: any key (or none) works
    with running_server(agent, api_key="edge-test-key-1") as secured:
        with pytest.raises(openai.AuthenticationError):
            client(secured, "nope-nope-nope").chat.completions.create(model="m", messages=OUTAGE)  # type: ignore[arg-type]
        out = client(secured, "edge-test-key-1").chat.completions.create(model="m", messages=OUTAGE,  # type: ignore[arg-type]
                                                                        max_tokens=8)
    assert out.choices[0].message.content


@pytest.mark.parametrize("name,body,status,code,param", BAD, ids=[b[0] for b in BAD])
def test_bad_input(base: str, name: str, body: bytes, status: int, code: str, param: str | None) -> None:
    resp = HTTP.post(base + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code and resp.json()["error"]["param"] == param


def test_long_conversation_is_trimmed_and_says_so(base: str) -> None:
    filler = "I have a long story about my connection and every detail of it matters a great deal to me. " * 6
    history: list[Any] = []
    for i in range(8):
        history += [{"role": "user", "content": f"({i}) {filler}"}, {"role": "assistant", "content": "I see."}]
    history.append({"role": "user", "content": "So can you fix my internet today?"})
    out = client(base).chat.completions.create(model="m", messages=history, max_tokens=16)
    assert out.model_extra["edge_agent"]["trimmed"] > 0
    assert out.usage is not None and out.usage.prompt_tokens <= 1024 - 16


def test_disconnect_mid_stream_frees_the_model(base: str) -> None:
    long_ask = [{"role": "user", "content": "Please write a very long, numbered list of 100 tips for fixing slow home "
                                            "Wi-Fi, with a full paragraph for each tip."}]
    before = HTTP.get(base + "/health").json()["counts"]
    stream = client(base).chat.completions.create(model="m", messages=long_ask, max_tokens=500, stream=True)  # type: ignore[arg-type]
    for i, _ in enumerate(stream):
        if i == 4:
            break
    stream.close()
    start = time.monotonic()
    nxt = client(base).chat.completions.create(model="m", messages=OUTAGE, max_tokens=8)  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    assert nxt.choices[0].message.content
    assert elapsed < 6.0, f"the next request waited {elapsed:.1f} s behind an abandoned stream"
    after = HTTP.get(base + "/health").json()["counts"]
    assert after["cancelled"] == before["cancelled"] + 1 and after["ok"] == before["ok"] + 1


def test_queue_of_one_answers_429(agent: Agent) -> None:
    outcomes: list[Any] = []

    def call(url: str) -> None:
        try:
            outcomes.append(client(url).chat.completions.create(model="m", messages=OUTAGE, max_tokens=24))  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            outcomes.append(exc)

    with running_server(agent, queue_size=1) as url:
        threads = [threading.Thread(target=call, args=(url,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    limited = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    served = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(outcomes) == 6 and len(limited) + len(served) == 6, outcomes
    assert limited and len(served) >= 2
    assert all(int(e.response.headers["retry-after"]) >= 1 for e in limited)


def test_sigterm_finishes_in_flight_request(real_pack: Path, student_path: Path, tmp_path: Path) -> None:
    sock_port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGE_AGENT_SHUTDOWN_GRACE": "20"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "serve", "--pack", str(real_pack), "--model",
                             str(student_path), "--port", str(sock_port)], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{sock_port}"
    try:
        _wait_healthy(base, proc)
        got: list[str] = []
        resp_holder: dict[str, Any] = {}

        def read() -> None:
            body = {"model": "m", "messages": OUTAGE, "max_tokens": 48, "stream": True}
            with HTTP.stream("POST", base + "/v1/chat/completions", json=body) as resp:
                resp_holder["status"] = resp.status_code
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        got.append(line[6:])

        reader = threading.Thread(target=read)
        reader.start()
        while not got and reader.is_alive():
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        reader.join(60)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    logged = (tmp_path / "serve.log").read_text()
    # uvicorn re-raises the SIGTERM it caught once shutdown is complete, so -15 is a clean exit too
    assert rc in (0, -signal.SIGTERM) and "Application shutdown complete" in logged, logged
    assert resp_holder["status"] == 200 and got[-1] == "[DONE]", got[-3:]
    assert json.loads(got[-2])["choices"][0]["finish_reason"] in ("stop", "length")
    records = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert any(r.get("outcome") == "ok" and r.get("stream") is True for r in records), logged
    assert "Authorization" not in logged


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"edge-agent serve exited early with {proc.returncode}")
        try:
            if HTTP.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("edge-agent serve did not become healthy")
