"""The student in the loop: the shipped `Agent` (same prompt assembly and retrieval) over the library so far.

Generation runs in a worker thread under one asyncio lock (one model, one context), so teacher
calls keep flowing while the student computes. Student replies are cached like teacher calls
(unpaid), so a resumed run replays them instead of recomputing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np

from edge_agent.agent import Agent
from edge_agent.backends import ChatBackend, GenerationConfig
from edge_agent.embedder import Embedder
from edge_agent.index import ExactIndex
from edge_agent.library import Strategy
from edge_agent.pack import PackSettings, index_text
from edge_agent.rendering import render_prompt
from edge_agent.retrieval import Hit, Retriever

from ..roles.cache import CachedCalls, CacheKey, CallCache, generation_params

__all__ = ["StudentRunner", "embed_library"]


def embed_library(embedder: Embedder, strategies: Sequence[Strategy], query_turns: int) -> np.ndarray:
    """Vectors for strategies, embedded exactly as `build_pack` embeds them."""
    if not strategies:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return embedder.embed([index_text(s, query_turns) for s in strategies])


class StudentRunner:
    def __init__(self, backend: ChatBackend, system_prompt: str, embedder: Embedder, *,
                 settings: PackSettings | None = None, cache: CallCache | None = None, run_id: str = "",
                 max_tokens: int = 160, student_id: str | None = None) -> None:
        settings = settings or PackSettings()
        self.backend = backend
        self.system_prompt = system_prompt
        self.embedder = embedder
        self.retrieval = settings.retrieval
        self.prompting = settings.prompting
        self.generation = GenerationConfig(**{**settings.table("generation"), "max_tokens": max_tokens,
                                              "temperature": 0.0})
        self.id = student_id or f"student:{backend.name}"
        self.ledger = CachedCalls(cache, run_id=run_id, paid=False)
        self._lock: asyncio.Lock | None = None
        self.agent = self._agent(None)

    @property
    def calls(self) -> int:
        return self.ledger.count(self.id)[0]

    @property
    def cache_hits(self) -> int:
        return self.ledger.count(self.id)[1]

    def _agent(self, retriever: Retriever | None) -> Agent:
        return Agent(self.backend, system_prompt=self.system_prompt, retriever=retriever,
                     retrieval=self.retrieval, prompting=self.prompting, generation=self.generation)

    def set_library(self, strategies: Sequence[Strategy], vectors: np.ndarray | None = None) -> None:
        """Retrieve from these strategies from now on (an empty library means no guidance)."""
        if not strategies:
            self.agent = self._agent(None)
            return
        if vectors is None:
            vectors = embed_library(self.embedder, strategies, self.retrieval.query_turns)
        retriever = Retriever(self.embedder, ExactIndex(vectors), list(strategies), vectors, self.retrieval)
        self.agent = self._agent(retriever)

    async def reply(self, history: Sequence[Mapping[str, str]]) -> str:
        """The student's reply with whatever the library so far retrieves."""
        # Retrieval may count tokens with the model's tokenizer: never while it is generating.
        async with self._model_lock():
            messages, _, _ = self.agent.prepare(history)
        return await self._generate(messages)

    async def reply_with(self, history: Sequence[Mapping[str, str]], strategy: Strategy) -> str:
        """The student's reply with exactly this strategy injected, rendered as on the device."""
        messages = render_prompt(self.system_prompt, history, [Hit(strategy=strategy, score=1.0, row=-1)],
                                 self.prompting)
        return await self._generate(messages)

    def _model_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _generate(self, messages: list[dict[str, str]]) -> str:
        key = CacheKey.of(self.id, messages, generation_params(self.generation))
        hit = self.ledger.lookup(key, self.id, self.id)
        if hit is not None:
            return hit.text
        async with self._model_lock():
            hit = self.ledger.lookup(key, self.id, self.id)
            if hit is not None:  # the same prompt was generated while this one waited for the model
                return hit.text
            result = await asyncio.to_thread(self.backend.chat, messages, self.generation)
        self.ledger.store(key, self.id, self.id, result)
        return result.text.strip()
