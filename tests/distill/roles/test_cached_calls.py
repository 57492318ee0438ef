"""The one cache-and-meter wrapper: key rules, keys equal to those written before it, crash-safety."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from distill.builder.student_runner import StudentRunner
from distill.config import BudgetSettings, Endpoint
from distill.evaluation.remote import RoleChat
from distill.roles import openai_chat
from distill.roles.budget import BudgetExceeded, Meter
from distill.roles.cache import CachedChat, CallCache, generation_params, request_key
from distill.roles.caller import Caller
from distill.roles.openai_chat import OpenAIChat
from distill.testing import EchoStudent, LoopbackTeacher
from distill.tuning import compact
from edge_agent.backends import ChatResult, ChatStream, GenerationConfig, Message, ScriptedChat, Usage
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import ConfigError
from edge_agent.pack import PackSettings

REPO = Path(__file__).resolve().parents[3]
MSGS = [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": "Où est ma commande? 🙂"}]
# Computed with the code before the wrappers were merged (distill/roles/cache.request_key fed by
# Caller, RoleChat and StudentRunner): rows on users' disks carry these keys, so resumes still hit.
OLD_CALLER_KEY = "e8a2c518e1f215e6fea62c80fa51464ed23fa4296434e4bd36f7896596cc6853"
OLD_ROLE_KEY = "be23063c16f2911e03152000085f638204d64af4d1f093daa6228072747da502"
OLD_STUDENT_KEY = "4521fbe8b0da06bf698680d33cf3295f90507951ff73225ba70e80eade50c764"


def _key(model: str, messages: Sequence[Message], config: GenerationConfig) -> str:
    return request_key(model, [dict(m) for m in messages], generation_params(config))


def test_key_rules_model_messages_and_every_decoding_setting() -> None:
    base = GenerationConfig(stop=("</s>",))
    k = _key("sha-a", MSGS, base)
    assert k == _key("sha-a", [dict(m) for m in MSGS], GenerationConfig(stop=("</s>",)))
    assert k != _key("sha-b", MSGS, base)
    assert k != _key("sha-a", [*MSGS[:1], {"role": "user", "content": "Où est ma commande?"}], base)
    changed = {"max_tokens": 161, "temperature": 0.1, "top_p": 0.9, "top_k": 41, "repeat_penalty": 1.1,
               "stop": ("</s>", "\n"), "seed": 1}
    assert set(changed) == {f.name for f in dataclasses.fields(GenerationConfig)}  # a new setting needs a row
    for name, value in changed.items():
        assert _key("sha-a", MSGS, base.merged(**{name: value})) != k, name


def test_keys_equal_the_ones_the_old_code_wrote(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.sqlite")
    ep = Endpoint(role="teacher", base_url="http://127.0.0.1:8080/v1/", model="local", temperature=0.7,
                  max_tokens=300)
    caller = Caller({"teacher": ep}, {"teacher": ScriptedChat(default="{}")}, cache=cache, meter=Meter(),
                    run_id="r")
    caller.fingerprints["teacher"] = "fp0123456789abcd"
    asyncio.run(caller._call("teacher", MSGS, {"type": "json_object"}))
    assert cache.get(OLD_CALLER_KEY) is not None

    judge = Endpoint(role="judge", base_url="http://127.0.0.1:8080/v1", model="local", teacher_id="t1")
    role = RoleChat(judge, ScriptedChat(default="ok"), meter=Meter(), cache=cache)
    role.chat(MSGS, GenerationConfig(temperature=0.3, max_tokens=200, seed=7))
    assert cache.get(OLD_ROLE_KEY) is not None

    runner = StudentRunner(EchoStudent(), "sys", HashEmbedder(dim=8), cache=cache, run_id="r",
                           settings=PackSettings(generation={"stop": ["</s>", "\n\n"], "top_k": 20}),
                           student_id="student:smol@abcdef123456")
    asyncio.run(runner._generate([dict(m) for m in MSGS]))
    assert cache.get(OLD_STUDENT_KEY) is not None
    assert len(cache) == 3


class _Timed:
    """A student that reports usage and timings, as the llama.cpp student does."""

    name = "timed"

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        self.calls += 1
        return ChatResult(" Hello there ", Usage(10, 5, 4), "length", "timed", {"ttft_ms": 12.5, "decode_tps": 30.0})

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        return ChatStream.of(self.chat(messages, config))


def test_cached_answers_keep_usage_and_timings(tmp_path: Path) -> None:
    first = CachedChat(_Timed(), tmp_path / "c.sqlite", "sha-a")
    fresh = first.chat(MSGS)
    first.close()
    backend = _Timed()
    again = CachedChat(backend, tmp_path / "c.sqlite", "sha-a")
    stream = again.stream(MSGS)
    assert "".join(stream) == "Hello there" and backend.calls == 0 and again.ledger.count("timed") == (0, 1)
    for result in (fresh, stream.result):
        assert result is not None and result.usage == Usage(10, 5, 4) and result.finish_reason == "length"
        assert dict(result.timings) == {"ttft_ms": 12.5, "decode_tps": 30.0}
    assert first.ledger.count("timed") == (1, 0)


_WRITER = """
import os, sys
sys.path.insert(0, {repo!r})
from distill.roles.cache import CachedChat
from edge_agent.backends import ScriptedChat
chat = CachedChat(ScriptedChat(["stored"]), {path!r}, "sha-a")
print(chat.chat([{{"role": "user", "content": "hi"}}]).text, flush=True)
os._exit(0)  # no close, no cleanup: as if killed right after the answer came back
"""


def test_a_stored_answer_survives_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    out = subprocess.run([sys.executable, "-c", _WRITER.format(repo=str(REPO), path=str(path))],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "stored"
    backend = ScriptedChat([])
    assert CachedChat(backend, path, "sha-a").chat([{"role": "user", "content": "hi"}]).text == "stored"
    assert backend.calls == []


class _Gated(ScriptedChat):
    """Answers only once released, so a test can stop the run while the call is in flight."""

    def __init__(self) -> None:
        super().__init__(default="paid answer", name="gated")
        self.entered = threading.Event()
        self.release = threading.Event()

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        self.entered.set()
        self.release.wait(10)
        return super().chat(messages, config)


def test_a_paid_call_interrupted_by_a_budget_stop_is_stored(tmp_path: Path) -> None:
    ep = Endpoint(role="teacher", base_url="http://127.0.0.1:9/v1", model="m")
    cache = CallCache(tmp_path / "c.sqlite")
    meter = Meter(budget=BudgetSettings(max_calls=1))
    backend = _Gated()
    caller = Caller({"teacher": ep}, {"teacher": backend}, cache=cache, meter=meter, run_id="r1")

    async def stop_mid_call() -> None:
        task = asyncio.ensure_future(caller.text("teacher", [{"role": "user", "content": "a"}]))
        while not backend.entered.is_set():
            await asyncio.sleep(0.01)
        task.cancel()  # the run stops (as the loop cancels its units on BudgetExceeded)
        backend.release.set()
        await caller.drain()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(BudgetExceeded, match="resume"):
            await caller.text("teacher", [{"role": "user", "content": "b"}])

    asyncio.run(stop_mid_call())
    assert cache.spent("r1") == {"m": {"calls": 1, "prompt_tokens": 1, "completion_tokens": 2}}
    again = Caller({"teacher": ep}, {"teacher": ScriptedChat([])}, cache=CallCache(tmp_path / "c.sqlite"),
                   meter=Meter(), run_id="r2")
    out = asyncio.run(again.text("teacher", [{"role": "user", "content": "a"}]))
    assert out.cached and out.text == "paid answer" and again.cache_report()["by_teacher"][0]["cached_from_runs"] == ["r1"]


def test_an_old_format_cache_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "student-calls.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE calls (key TEXT PRIMARY KEY, text TEXT, stats TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="older format; delete it"):
        CallCache(path)


def test_one_openai_compatible_client_wrapper() -> None:
    assert not hasattr(compact, "EndpointChat")
    assert not hasattr(openai_chat, "AsyncChat") and not hasattr(openai_chat, "ScriptedAsyncChat")
    makers = sorted(str(p.relative_to(REPO)) for p in (REPO / "distill").rglob("*.py")
                    if "OpenAI(" in p.read_text(encoding="utf-8"))
    assert makers == ["distill/roles/openai_chat.py"]
    assert not (REPO / "distill" / "tuning" / "cache.py").exists()  # one cache module


def test_openai_chat_is_a_chat_backend_and_sends_what_it_did_before() -> None:
    bodies: list[dict[str, Any]] = []
    with LoopbackTeacher(faults=lambda n, body: bodies.append(body)) as t:  # type: ignore[func-returns-value]
        chat = OpenAIChat(Endpoint(role="judge", base_url=t.base_url, model="fake", temperature=0.2, max_tokens=50),
                          response_format={"type": "json_object"})
        stream = chat.stream([{"role": "user", "content": "hi"}])
        assert "".join(stream) and stream.result is not None and stream.result.usage.prompt_tokens == 1
        caller = Caller({"judge": chat.endpoint}, {"judge": chat}, cache=None, meter=Meter(), run_id="r")
        asyncio.run(caller.text("judge", [{"role": "user", "content": "again"}]))
        chat.close()
    # chat(): the config's (here the endpoint's) settings and seed; the Caller: no seed, no format
    assert {k: bodies[0][k] for k in ("temperature", "max_tokens", "seed", "response_format")} == {
        "temperature": 0.2, "max_tokens": 50, "seed": 0, "response_format": {"type": "json_object"}}
    assert "seed" not in bodies[1] and "response_format" not in bodies[1] and bodies[1]["max_tokens"] == 50
