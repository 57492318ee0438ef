"""The one OpenAI-compatible client wrapper: `OpenAIChat`, a `ChatBackend` for every teacher-side role.

It uses the official `openai` client; its own bounded retries (429, 5xx, timeouts, connection
errors) are the only retry layer. `send(ChatRequest)` is the same call with what `chat`'s
GenerationConfig cannot say (a JSON response format, no seed); `ask` sends a request to any
`ChatBackend`. The API key is read from the environment variable named in the role's settings and
never logged, cached or written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.backends import ChatBackend, ChatResult, ChatStream, GenerationConfig, Message, Usage
from edge_agent.errors import BackendError, ConfigError

from ..config import Endpoint

__all__ = ["ChatRequest", "FatalBackendError", "OpenAIChat", "ask"]

log = logging.getLogger(__name__)


class FatalBackendError(BackendError):
    """Retrying cannot help (bad key, unknown model, bad request): stop the run at once."""


@dataclass(frozen=True)
class ChatRequest:
    messages: Sequence[Mapping[str, str]]
    temperature: float
    max_tokens: int
    response_format: Mapping[str, Any] | None = None
    seed: int | None = None

    @classmethod
    def of(cls, endpoint: Endpoint, messages: Sequence[Message], config: GenerationConfig | None = None,
           response_format: Mapping[str, Any] | None = None) -> ChatRequest:
        """What a `chat(messages, config)` call sends: the config's temperature, max_tokens and seed (the
        endpoint's temperature and max_tokens without one)."""
        cfg = config or GenerationConfig(temperature=endpoint.temperature, max_tokens=endpoint.max_tokens)
        return cls(messages=[{"role": m["role"], "content": m["content"]} for m in messages],
                   temperature=cfg.temperature, max_tokens=cfg.max_tokens, response_format=response_format,
                   seed=cfg.seed)

    def params(self) -> dict[str, Any]:
        """What, beside model and messages, identifies this request (the cache key uses it)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens,
                "response_format": dict(self.response_format) if self.response_format else None,
                "seed": self.seed}


def ask(backend: ChatBackend, request: ChatRequest) -> ChatResult:
    """Send `request` to any ChatBackend: its own `send` when it has one, else `chat` (fakes)."""
    send = getattr(backend, "send", None)
    if send is not None:
        result: ChatResult = send(request)
        return result
    return backend.chat(request.messages, GenerationConfig(max_tokens=request.max_tokens,
                                                           temperature=request.temperature))


def _api_key(endpoint: Endpoint) -> str:
    if not endpoint.api_key_env:
        return "not-needed"  # local servers ignore the key; the client requires a value
    value = os.environ.get(endpoint.api_key_env)
    if not value:
        raise ConfigError(f"role {endpoint.role!r}: environment variable {endpoint.api_key_env} is not set; "
                          "export it with your API key")
    return value


class OpenAIChat:
    """One role's endpoint through `openai.OpenAI` (pass `http_client` to mock the transport).

    `chat(messages, config)` sends the config's temperature, max_tokens and seed (and the
    `response_format` given here); `send(request)` sends exactly a `ChatRequest`.
    """

    def __init__(self, endpoint: Endpoint, http_client: Any = None, client: Any = None,
                 response_format: Mapping[str, Any] | None = None) -> None:
        import openai
        from openai.types.chat import ChatCompletion

        self.endpoint = endpoint
        self.name = endpoint.model
        self.response_format = dict(response_format) if response_format else None
        self._openai = openai
        self._completion = ChatCompletion
        self.client = client or openai.OpenAI(
            base_url=endpoint.base_url, api_key=_api_key(endpoint), max_retries=endpoint.max_retries,
            timeout=endpoint.timeout_s, http_client=http_client)
        self._owns_client = client is None

    @classmethod
    def for_roles(cls, endpoints: Mapping[str, Endpoint]) -> dict[str, OpenAIChat]:
        """One backend per role; roles with the same server, key, timeout and retries share a client."""
        shared: dict[tuple[Any, ...], OpenAIChat] = {}
        out: dict[str, OpenAIChat] = {}
        for role, ep in endpoints.items():
            key = (ep.base_url, ep.api_key_env, ep.timeout_s, ep.max_retries)
            first = shared.get(key)
            out[role] = cls(ep, client=first.client if first else None)
            shared.setdefault(key, out[role])
        return out

    def _fail(self, exc: Exception) -> BackendError:
        o, ep = self._openai, self.endpoint
        where = f"{ep.role} endpoint {ep.base_url} (model {ep.model})"
        tries = f"after {ep.max_retries + 1} tries"
        key = ep.api_key_env or "an API key variable (api_key_env)"
        # First match wins (subclasses before APIStatusError); True: retrying cannot help.
        table: tuple[tuple[Any, bool, str], ...] = (
            ((o.AuthenticationError, o.PermissionDeniedError), True, f"refused the API key; check {key}"),
            (o.NotFoundError, True, "answered 404; check the base URL (it usually ends in /v1) and the model name"),
            (o.BadRequestError, True, (f"rejected the request ({str(exc)[:160]}); if it is about "
                                       "response_format set json_mode = \"off\" for this role")),
            (o.RateLimitError, False, f"kept answering 429 (rate limit) {tries}; lower --concurrency or wait, then resume"),
            (o.APITimeoutError, False, (f"timed out {tries} (timeout_s={ep.timeout_s}); raise timeout_s or "
                                        "check the server, then resume")),
            (o.APIConnectionError, False, f"is unreachable {tries}; start the server or fix base_url, then resume"),
            (o.APIStatusError, False, (f"answered HTTP {getattr(exc, 'status_code', '?')} {tries}; resume "
                                       "when it is healthy")),
        )
        for kinds, fatal, message in table:
            if isinstance(exc, kinds):
                return (FatalBackendError if fatal else BackendError)(f"{where} {message}")
        return BackendError(f"{where} failed: {type(exc).__name__}; resume when it is healthy")

    def fingerprint(self) -> str:
        """A short hash of what the server lists for this model at `/models` ("" if it cannot tell).

        llama.cpp-style servers list the loaded file's size and shape there, so a different GGUF
        behind the same alias gives another fingerprint. The volatile `created` time is left out.
        """
        try:
            page = self.client.with_options(timeout=min(self.endpoint.timeout_s, 10.0), max_retries=0).models.list()
            entries = [m.model_dump() for m in page.data]
        except self._openai.OpenAIError as exc:
            log.info("%s: %s/models did not answer (%s); cache keyed by URL and model only",
                     self.endpoint.role, self.endpoint.base_url, type(exc).__name__)
            return ""
        match = [e for e in entries if e.get("id") == self.endpoint.model]
        if not match and len(entries) == 1:
            match = entries  # single-model servers often answer to any alias
        if not match:
            return ""
        entry = {k: v for k, v in match[0].items() if k != "created"}
        return hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        return self.send(ChatRequest.of(self.endpoint, messages, config, self.response_format))

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        return ChatStream.of(self.chat(messages, config))

    def send(self, request: ChatRequest) -> ChatResult:
        """One chat completion, exactly as `request` says (blocking; the async Caller runs it in a thread)."""
        kwargs: dict[str, Any] = {"model": self.endpoint.model, "messages": [dict(m) for m in request.messages],
                                  "temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.response_format:
            kwargs["response_format"] = dict(request.response_format)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        try:
            # The client's low-level `post` keeps its retries and timeouts but skips re-validating
            # the already plain-JSON messages, which costs ~10 ms of CPU per call in `create`.
            response = self.client.post("/chat/completions", body=kwargs, cast_to=self._completion)
        except self._openai.OpenAIError as exc:
            raise self._fail(exc) from None
        if not getattr(response, "choices", None):
            raise BackendError(f"{self.endpoint.role} endpoint returned no choices; check the server")
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        return ChatResult(
            text=(choice.message.content or "").strip(),
            usage=Usage(prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0)),
            finish_reason=str(choice.finish_reason or "stop"),
            model=str(getattr(response, "model", "") or self.endpoint.model),
        )

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
