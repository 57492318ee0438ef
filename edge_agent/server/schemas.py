"""Request and response bodies of the server, in the OpenAI chat-completions shapes.

Requests are validated here (pydantic); responses are built by small functions so the app never
hand-writes JSON. The `edge_agent` extension field carries what retrieval did; it is never content.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..agent import Reply
from ..prompting import sanitize_customer_text

__all__ = [
    "ApiError",
    "ChatMessage",
    "ChatRequest",
    "chunk_body",
    "completion_body",
    "extension",
    "models_body",
    "new_completion_id",
    "validation_error",
]

ROLES = ("system", "developer", "user", "assistant")


class ApiError(Exception):
    """An error answered as OpenAI-shaped JSON: `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields this server honours; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    def history(self) -> list[dict[str, str]]:
        """Plain messages for the agent; `developer` is the newer name of `system`.

        Over HTTP the client writes the assistant turns too (a widget may let the customer edit
        them), so guidance markers are stripped from those as well as from customer turns.
        """
        out = []
        for m in self.messages:
            role = "system" if m.role == "developer" else m.role
            text = m.text()
            out.append({"role": role, "content": sanitize_customer_text(text) if role != "system" else text})
        return out

    def reply_cap(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def bearer_authorizer(api_key: str | None) -> Callable[[Any], None]:
    """A check for `Authorization: Bearer <key>` on a request (a no-op when the server has no key)."""
    key = api_key.encode("utf-8") if api_key else None

    def authorize(request: Any) -> None:
        if key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), key):
            raise ApiError(401, "missing or wrong API key; send the header 'Authorization: Bearer <key>'",
                           type="authentication_error", code="invalid_api_key")

    return authorize


def _param(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(exc: ValidationError) -> ApiError:
    """The first pydantic problem as a 400 naming the offending field (e.g. `messages[2].role`)."""
    first = exc.errors()[0]
    # Union members add their type names to the location; they mean nothing to a client.
    loc = [p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "list")))]
    param = _param(loc) or None
    if param and param.endswith(".role") and first["type"] == "literal_error":
        return ApiError(400, f"unknown role {first.get('input')!r} at {param}; valid roles: {', '.join(ROLES)}",
                        param=param, code="invalid_role")
    if param == "messages" and first["type"] == "too_short":
        return ApiError(400, "messages is empty; send at least one user message", param=param, code="empty_messages")
    where = f"{param}: " if param else ""
    return ApiError(400, f"{where}{first['msg']}", param=param, code="invalid_value")


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def extension(reply: Reply | None, trimmed: int, timings: Mapping[str, float]) -> dict[str, Any]:
    """The `edge_agent` field: strategies (id, score), turns trimmed, timings (ms) and, in the
    grounded mode, the route, its reason, the facts and the candidates considered."""
    hits = reply.hits if reply else []
    out: dict[str, Any] = {
        "strategies": [{"id": h.strategy.id, "score": round(float(h.score), 4)} for h in hits],
        "trimmed": trimmed,
        "mode": reply.mode if reply else "",
        "timings_ms": {k: round(float(v), 2) for k, v in timings.items()},
    }
    if reply is not None and reply.route:
        out["route"] = reply.route
    if reply is not None and reply.reason:
        out.update({"reason": reply.reason, "facts": dict(reply.facts), "strategy_id": reply.strategy_id,
                    "candidates": [c.to_json() for c in reply.candidates]})
    return out


def usage_body(reply: Reply) -> dict[str, Any]:
    u = reply.usage
    cached = u.prompt_tokens - u.evaluated_prompt_tokens if u.evaluated_prompt_tokens is not None else 0
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens, "prompt_tokens_details": {"cached_tokens": max(cached, 0)}}


def completion_body(cid: str, model: str, reply: Reply, ext: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "finish_reason": reply.finish_reason, "logprobs": None}],
        "usage": usage_body(reply),
        "edge_agent": dict(ext),
    }


def chunk_body(cid: str, model: str, created: int, delta: Mapping[str, str], *,
               finish_reason: str | None = None, reply: Reply | None = None,
               ext: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One SSE chunk; the final one (with `reply`) also carries usage and the extension field."""
    body: dict[str, Any] = {
        "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason, "logprobs": None}],
    }
    if reply is not None:
        body["usage"] = usage_body(reply)
        body["edge_agent"] = dict(ext or {})
    return body


def models_body(model: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created,
                                        "owned_by": "edge-agent"}]}
