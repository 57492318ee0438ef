"""Fakes for tests and benchmarks: a deterministic fake teacher, an echo student, a loopback server.

`fake_teacher_reply` answers every role plausibly (valid JSON where JSON is asked for). The
`LoopbackTeacher` serves it as an OpenAI-compatible endpoint on 127.0.0.1 with a fixed latency and
an optional fault plan (429, 500, timeout, malformed, truncated), and counts what it delivered.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_agent.backends import ChatResult, ChatStream, GenerationConfig, Message, Usage
from edge_agent.prompting import GUIDANCE_OPEN

from .builder.prompts import ROLE_LINES

__all__ = ["EchoStudent", "LoopbackTeacher", "fake_teacher_reply", "role_of"]


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def role_of(messages: Sequence[Mapping[str, str]]) -> str:
    system = str(messages[0].get("content", "")) if messages and messages[0].get("role") == "system" else ""
    for role, line in ROLE_LINES.items():
        if system.startswith(line):
            return role
    return "teacher"


def fake_teacher_reply(messages: Sequence[Mapping[str, str]]) -> str:
    """A deterministic answer for any role, a pure function of the messages."""
    role = role_of(messages)
    last = str(messages[-1].get("content", ""))
    h = _h(json.dumps([dict(m) for m in messages], sort_keys=True))
    if role == "customer":
        turns = sum(1 for m in messages if m["role"] == "assistant")
        found = re.search(r"open with \(use your own words\): (.+)", str(messages[0]["content"]))
        if turns == 0:
            return found.group(1).strip() if found else "Hello, I have a problem with my booking."
        if turns >= 2 + h % 2:
            return "Alright, thank you for explaining. Goodbye. [END]"
        return ["But why exactly is that not possible in my case?", "I am not happy. What else can you offer me?",
                "Can you check again, please? I really need this sorted."][h % 3]
    if role in ("writer", "merger"):
        k = 2 + h % 3
        items = [{"do": f"Acknowledge the customer's concern and explain option {i + 1} clearly (v{h % 7})",
                  "avoid": "Vague answers or promises outside the policy"} for i in range(k)]
        return json.dumps({"items": items, "compact": f"Acknowledge the concern, explain the policy simply and "
                                                      f"offer the allowed options (variant {h % 5})."})
    if role == "judge":
        return json.dumps({"score": 1 + h % 5, "reason": "Similar tone; misses one option." if h % 2 else "Close."})
    if role == "generator":
        return json.dumps({"situations": [
            {"title": f"Edge case {i} ({h % 97})", "description": f"A customer with an unusual variant {i} of the problem.",
             "customer_goal": "A fair solution", "opening": f"Hi, my case is a bit unusual ({i}). Can you help?",
             "why": "the agent struggled to offer alternatives"} for i in range(2)]})
    return (f"I'm sorry about the trouble and I understand. Under our policy I can offer the options we have; "
            f"let me explain them for your case ({h % 1000}). {last[:0]}").strip()


class EchoStudent:
    """A tiny deterministic `ChatBackend` standing in for the GGUF student (no model file needed).

    Its reply depends on the customer's last message and on any injected guidance, so the loop's
    retrieval and injection visibly change what it says.
    """

    name = "echo"

    def __init__(self) -> None:
        self.calls: list[list[dict[str, str]]] = []

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        self.calls.append([dict(m) for m in messages])
        last = str(messages[-1].get("content", ""))
        said, _, guidance = last.partition(GUIDANCE_OPEN)
        words = " ".join(said.split()[:6])
        text = f"Thanks for contacting us about '{words}'."
        if guidance.strip():
            text += " " + " ".join(guidance.replace("[[END AGENT GUIDANCE]]", "").split()[:14])
        text += " Is there anything else?"
        usage = Usage(prompt_tokens=sum(len(str(m.get("content", "")).split()) for m in messages),
                      completion_tokens=len(text.split()))
        return ChatResult(text=text, usage=usage, model=self.name)

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        return ChatStream.of(self.chat(messages, config))


Fault = str  # "429" | "500" | "timeout" | "malformed" | "truncated" | "drop"


class LoopbackTeacher:
    """An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 answering with `fake_teacher_reply`.

    `faults(n, body)` may return a fault for the n-th request (1-based); `before_reply(n)` runs
    before each answer; when it returns True the request is dropped unanswered (tests use it to
    kill a client at a chosen call). `delivered` counts, per
    request body hash, the answers fully written back: a count above 1 is a repeated paid call.
    """

    def __init__(self, latency_s: float = 0.0, *, faults: Callable[[int, dict[str, Any]], Fault | None] | None = None,
                 before_reply: Callable[[int], bool] | None = None, timeout_sleep_s: float = 2.0,
                 reply: Callable[[Sequence[Mapping[str, str]]], str] = fake_teacher_reply,
                 models: Sequence[Mapping[str, Any]] | None = None) -> None:
        self.latency_s = latency_s
        self.faults = faults
        self.before_reply = before_reply
        self.timeout_sleep_s = timeout_sleep_s
        self.reply = reply
        # What GET /v1/models lists (None: answer 404, like a server without that route).
        self.models = [dict(m) for m in models] if models is not None else None
        self.requests = 0
        self.last_auth = ""
        self.delivered: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # Clients killed or timed out mid-request are expected here; don't print their tracebacks.
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> LoopbackTeacher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def paid(self) -> int:
        return sum(self.delivered.values())

    @property
    def repeated(self) -> int:
        return sum(n - 1 for n in self.delivered.values() if n > 1)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
                return None

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle's algorithm and
                # delayed ACKs add ~40 ms to every loopback call.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, status: int, payload: Mapping[str, Any], headers: Mapping[str, str] = {}) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def do_GET(self) -> None:
                if outer.models is None or self.path.rstrip("/") != "/v1/models":
                    self._send(404, {"error": {"message": "not found", "type": "not_found"}})
                    return
                self._send(200, {"object": "list", "data": [{"object": "model", "created": int(time.time()),
                                                             **m} for m in outer.models]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with outer.lock:
                    outer.requests += 1
                    n = outer.requests
                    outer.last_auth = self.headers.get("Authorization", "")
                fault = outer.faults(n, body) if outer.faults else None
                if outer.before_reply and outer.before_reply(n):
                    self.close_connection = True  # the hook killed the client: nothing is delivered
                    return
                if outer.latency_s:
                    time.sleep(outer.latency_s)
                if fault in ("429", "500"):
                    err = {"error": {"message": f"injected {fault}", "type": "server_error"}}
                    self._send(int(fault), err, {"retry-after-ms": "10"})
                    return
                if fault == "timeout":
                    time.sleep(outer.timeout_sleep_s)
                if fault == "drop":
                    self.close_connection = True
                    return
                text = outer.reply(body.get("messages", []))
                finish = "stop"
                if fault == "malformed":
                    text = "Sure! Here is what I think: " + text.replace("{", "(")
                elif fault == "truncated":
                    text, finish = text[: max(1, len(text) // 2)], "length"
                prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                self._send(200, {
                    "id": f"fake-{n}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                              "total_tokens": prompt + len(text.split())}})
                key = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
                with outer.lock:
                    outer.delivered[key] += 1

        return Handler
