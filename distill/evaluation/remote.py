"""Remote roles for evaluation (customer simulator, teacher, judge) as synchronous ChatBackends.

Each call goes through the distill call cache first (same request, same reply, no cost), then the
shared budget `Meter`, then the async OpenAI-compatible backend of `distill.roles.openai_chat`.
Per-call temperature, max_tokens and seed come from the caller's GenerationConfig.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edge_agent.backends import ChatResult, GenerationConfig, Message, Usage
from edge_agent.files import home_dir

from ..config import Endpoint
from ..roles.budget import BudgetExceeded, Meter
from ..roles.cache import CallCache, request_key
from ..roles.caller import response_format
from ..roles.openai_chat import AsyncChat, ChatRequest, OpenAIChat

__all__ = ["RoleChat", "default_cache_path", "make_endpoint", "make_role"]


def default_cache_path() -> Path:
    return home_dir() / "distill" / "cache.sqlite"  # the same file `edge-agent distill` uses


class RoleChat:
    """One role's endpoint behind the `ChatBackend` protocol, cached and metered."""

    def __init__(self, endpoint: Endpoint, backend: AsyncChat, *, meter: Meter, cache: CallCache | None = None,
                 run_id: str = "eval", json_model: type[BaseModel] | None = None) -> None:
        self.endpoint = endpoint
        self.backend = backend
        self.meter = meter
        self.cache = cache
        self.run_id = run_id
        self.name = f"{endpoint.role}:{endpoint.model}"
        self.format = response_format(endpoint, json_model)
        self.calls = 0
        self.cache_hits = 0
        self._loop = asyncio.new_event_loop()

    def default_config(self) -> GenerationConfig:
        return GenerationConfig(temperature=self.endpoint.temperature, max_tokens=self.endpoint.max_tokens)

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        cfg = config or self.default_config()
        request = ChatRequest(messages=[{"role": m["role"], "content": m["content"]} for m in messages],
                              temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                              response_format=self.format, seed=cfg.seed)
        key = request_key(self.endpoint.identity(), request.messages, request.params())
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.meter.record_hit(self.endpoint.model)
                self.cache_hits += 1
                r = hit.response
                return ChatResult(text=r["text"], usage=Usage(r.get("prompt_tokens", 0), r.get("completion_tokens", 0)),
                                  finish_reason=r.get("finish_reason", "stop"), model=self.endpoint.model)
        reason = self.meter.exceeded()
        if reason:
            raise BudgetExceeded(f"{reason}; finished conversations are cached: raise the budget (--max-calls, "
                                 "--max-tokens) and run the same command again")
        result = self._loop.run_until_complete(self.backend.complete(request))
        self.calls += 1
        if self.cache is not None:
            self.cache.put(key, self.endpoint.model, {"messages": request.messages, **request.params()},
                           {"text": result.text, "finish_reason": result.finish_reason,
                            "prompt_tokens": result.usage.prompt_tokens,
                            "completion_tokens": result.usage.completion_tokens},
                           run_id=self.run_id, paid=True, prompt_tokens=result.usage.prompt_tokens,
                           completion_tokens=result.usage.completion_tokens)
        self.meter.record_paid(self.endpoint.model, result.usage.prompt_tokens, result.usage.completion_tokens)
        return result

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> Iterator[str]:
        yield self.chat(messages, config).text

    def close(self) -> None:
        close = getattr(self.backend, "aclose", None)
        if close is not None:
            self._loop.run_until_complete(close())
        self._loop.close()


def make_endpoint(role: str, base_url: str, model: str, **fields: Any) -> Endpoint:
    """An Endpoint from flags; unset (None) fields keep the distill defaults."""
    return Endpoint(role=role, base_url=base_url, model=model, **{k: v for k, v in fields.items() if v is not None})


def make_role(endpoint: Endpoint, *, meter: Meter, cache: CallCache | None, run_id: str = "eval",
              json_model: type[BaseModel] | None = None, http_client: Any = None) -> RoleChat:
    return RoleChat(endpoint, OpenAIChat(endpoint, http_client=http_client), meter=meter, cache=cache,
                    run_id=run_id, json_model=json_model)


def usage_json(roles: Mapping[str, RoleChat], meter: Meter) -> dict[str, Any]:
    return {"meter": meter.to_json(),
            "roles": {k: {"paid_calls": r.calls, "cache_hits": r.cache_hits} for k, r in roles.items()}}
