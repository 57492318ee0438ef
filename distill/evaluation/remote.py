"""Remote roles for evaluation (customer simulator, teacher, judge) as synchronous ChatBackends.

Each call goes through `CachedCalls` (the distill call cache first: same request, same reply, no
cost; then the shared budget `Meter`) to the role's `OpenAIChat`. Per-call temperature,
max_tokens and seed come from the caller's GenerationConfig.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from edge_agent.backends import ChatBackend, ChatResult, ChatStream, GenerationConfig, Message

from ..config import Endpoint
from ..roles.budget import Meter
from ..roles.cache import CachedCalls, CacheKey, CallCache, default_cache_path
from ..roles.caller import response_format
from ..roles.openai_chat import ChatRequest, OpenAIChat, ask

__all__ = ["RoleChat", "default_cache_path", "make_endpoint", "make_role"]

_ADVICE = ("finished conversations are cached: raise the budget (--max-calls, --max-tokens) and run the "
           "same command again")


class RoleChat:
    """One role's backend behind the `ChatBackend` protocol, cached and metered (a face of `CachedCalls`)."""

    def __init__(self, endpoint: Endpoint, backend: ChatBackend, *, meter: Meter, cache: CallCache | None = None,
                 run_id: str = "eval", json_model: type[BaseModel] | None = None) -> None:
        self.endpoint = endpoint
        self.backend = backend
        self.name = f"{endpoint.role}:{endpoint.model}"
        self.format = response_format(endpoint, json_model)
        self.ledger = CachedCalls(cache, meter=meter, run_id=run_id, advice=_ADVICE)

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        request = ChatRequest.of(self.endpoint, messages, config, self.format)
        cached = CacheKey.of(self.endpoint.identity(), request.messages, request.params())
        result, _ = self.ledger.call(cached, self.endpoint.role, self.endpoint.model, lambda: ask(self.backend, request))
        return result

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        return ChatStream.of(self.chat(messages, config))

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


def make_endpoint(role: str, base_url: str, model: str, **fields: Any) -> Endpoint:
    """An Endpoint from flags; unset (None) fields keep the distill defaults."""
    return Endpoint(role=role, base_url=base_url, model=model, **{k: v for k, v in fields.items() if v is not None})


def make_role(endpoint: Endpoint, *, meter: Meter, cache: CallCache | None, run_id: str = "eval",
              json_model: type[BaseModel] | None = None, http_client: Any = None) -> RoleChat:
    return RoleChat(endpoint, OpenAIChat(endpoint, http_client=http_client), meter=meter, cache=cache,
                    run_id=run_id, json_model=json_model)


def usage_json(roles: Mapping[str, RoleChat], meter: Meter) -> dict[str, Any]:
    return {"meter": meter.to_json(),
            "roles": {k: dict(zip(("paid_calls", "cache_hits"), r.ledger.count(r.endpoint.role), strict=True))
                      for k, r in roles.items()}}
