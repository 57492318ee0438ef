"""The support agent: per turn, retrieve strategies, then answer.

In the `grounded` mode (the default for packs that ask for it) every reply is a checked choice made
by `planner` (a fitted library reply, a gated student draft, a clarifying question or a hand-off);
in the other rendering modes the student writes each reply with the retrieved guidance in its
prompt. `Agent` takes its parts as objects (any ChatBackend, any Embedder/index via a Retriever), so
tests pass fakes; `Agent.from_pack` wires the real ones from a pack and a registered model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .backends import (
    LLAMA_CPP,
    ChatBackend,
    GenerationConfig,
    LocalModel,
    Message,
    backend_names,
    make_backend,
)
from .errors import ConfigError
from .pack.manifest import check_mode_params, prompting_for
from .pack import Pack, load_pack
from .policy import PolicyRule
from .prompting import MARKER_STOPS
from .rendering import PromptConfig, render_prompt
from .reply import Reply, ReplyStream
from .retrieval import Retrieval, RetrievalConfig, Retriever, approx_tokens
from .runtime import RuntimeConfig

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["Agent", "Reply", "ReplyStream", "mock_student", "student_for", "MARKER_STOPS"]


def mock_student() -> ChatBackend:
    """`--model mock`: a scripted student that answers instantly, for demos of the plumbing and tests."""
    return make_backend("mock")


def student_for(model: str | None, *, chat_template: Path | str | None = None, n_ctx: int | None = None,
                runtime: RuntimeConfig | None = None, system_prompt: str | None = None,
                cache_dir: Path | None = None) -> tuple[ChatBackend, dict[str, Any]]:
    """The student a `--model` value names, and its decoding defaults: a registered backend ("mock",
    "scripted"), else a GGUF by registry name or path run by llama.cpp (`system_prompt` warms its KV
    prefix from `cache_dir`)."""
    if model is not None and model != LLAMA_CPP and model in backend_names():
        return make_backend(model), {}
    from .models import resolve_model

    spec = resolve_model(model, chat_template=chat_template)
    student = make_backend(LLAMA_CPP, spec=spec, n_ctx=n_ctx, runtime=runtime, system_prompt=system_prompt,
                           cache_dir=cache_dir)
    return student, dict(spec.generation)


class Agent:
    """Retrieval-augmented student. History is OpenAI-style messages ending with the customer."""

    def __init__(
        self,
        student: ChatBackend,
        *,
        system_prompt: str = "",
        retriever: Retriever | None = None,
        retrieval: RetrievalConfig | None = None,
        prompting: PromptConfig | None = None,
        generation: GenerationConfig | None = None,
        pack: Pack | None = None,
        rules: Sequence[PolicyRule] | None = None,
    ) -> None:
        self.student = student
        self.system_prompt = system_prompt
        self.retriever = retriever
        self.retrieval = retrieval or (retriever.config if retriever else RetrievalConfig())
        self.prompting = prompting or PromptConfig()
        self.generation = generation or GenerationConfig()
        self.pack = pack
        # Policy rules the adapt mode's fit check enforces; from the pack's domain by default.
        self.rules = list(rules) if rules is not None else (pack.rules if pack is not None else [])
        self._costs: dict[tuple[str, str, str], int] = {}
        if retriever is not None:
            retriever.cost = self._guidance_cost
        self._grounded: Any = None  # built on first use: see edge_agent.grounding
        self._checker: Any = None

    @classmethod
    def from_pack(
        cls,
        pack: Pack | Path | str,
        model: str | None = None,
        *,
        student: ChatBackend | None = None,
        chat_template: Path | str | None = None,
        n_ctx: int | None = None,
        retrieval: Mapping[str, Any] | None = None,
        prompting: Mapping[str, Any] | None = None,
        generation: Mapping[str, Any] | None = None,
        embed_threads: int | None = None,
        warm_prefix: bool = True,
        runtime: RuntimeConfig | None = None,
    ) -> "Agent":
        """Load a pack and a student (a backend name such as "mock", a registry name, a GGUF path,
        or a ready backend).

        `chat_template` is the path of a Jinja template file, for GGUFs that lack one. With
        `warm_prefix`, the system prompt's KV state is loaded from (or saved to) the cache in
        $EDGE_AGENT_HOME/kvcache, so a cold start prefills only the customer's first message.
        `runtime` (threads, wait policy; default: `RuntimeConfig()`) is passed to the student and the
        embedder; the CLI and the server pass `RuntimeConfig.from_env()`.
        """
        runtime = runtime or RuntimeConfig()
        from concurrent.futures import ThreadPoolExecutor

        loaded = pack if isinstance(pack, Pack) else load_pack(pack)
        settings = loaded.settings
        gen_defaults: dict[str, Any] = {}
        # The ONNX session and the GGUF load in native code that releases the GIL: overlap them.
        pool = ThreadPoolExecutor(max_workers=1)
        embedder_future = pool.submit(loaded.open_embedder, threads=embed_threads or runtime.embed_threads)
        pool.shutdown(wait=False)
        if student is None:
            from .files import home_dir

            student, gen_defaults = student_for(
                model, chat_template=chat_template, n_ctx=n_ctx, runtime=runtime,
                system_prompt=loaded.system_prompt if warm_prefix else None, cache_dir=home_dir() / "kvcache")
        # The pack's generation table overrides the model's defaults only for the keys it gives.
        gen = GenerationConfig().merged(**gen_defaults).merged(**settings.table("generation")).merged(
            **dict(generation or {}))
        rcfg = settings.retrieval.merged(**dict(retrieval or {}))
        if prompting:  # the pack's own table was checked when it loaded; an override is checked here,
            pcfg = PromptConfig.from_mapping(prompting_for(settings.table("prompting"), prompting))
            check_mode_params(pcfg)  # so a misspelt --param fails before the first turn
        else:
            pcfg = settings.prompting
        retriever = Retriever(embedder_future.result(), loaded.index, loaded.strategies, loaded.vectors, rcfg)
        return cls(student, system_prompt=loaded.system_prompt, retriever=retriever, retrieval=rcfg,
                   prompting=pcfg, generation=gen, pack=loaded)

    # --- pieces ----------------------------------------------------------------------------
    def _guidance_cost(self, strategy: Any) -> int:
        """Student tokens a hit would inject; tokenised once per strategy and rendering mode."""
        key = (strategy.id, self.prompting.mode, repr(sorted(self.prompting.params.items())))
        cost = self._costs.get(key)
        if cost is None:
            from .plans import plan_for

            text = plan_for(self.prompting.mode).price(strategy, self.prompting.params)
            cost = self._costs[key] = self.token_count(text)
        return cost

    def token_count(self, text: str) -> int:
        """`text` in the student's tokens (its own tokenizer when it has one, else an estimate)."""
        if isinstance(self.student, LocalModel):
            return int(self.student.count_tokens(text))
        return approx_tokens(text)

    def retrieve(self, history: Sequence[Message], retrieval: RetrievalConfig | None = None, *,
                 vector: np.ndarray | None = None) -> Retrieval:
        """The strategies for this turn; `vector`: the recent window (`query_text`) already embedded."""
        cfg = retrieval or self.retrieval
        if self.retriever is None or self.prompting.mode == "plain":
            return Retrieval(query="", hits=[])
        return self.retriever.retrieve(history, cfg, vector=vector)

    def prepare(self, history: Sequence[Message], *, retrieval: RetrievalConfig | None = None,
                prompting: PromptConfig | None = None) -> tuple[list[dict[str, str]], Retrieval, float]:
        """Retrieve and render; returns (messages for the student, retrieval, assembly ms)."""
        if not history:
            raise ConfigError("the conversation is empty; add a customer message")
        found = self.retrieve(history, retrieval)
        t0 = time.perf_counter()
        messages = render_prompt(self.system_prompt, history, found.hits, prompting or self.prompting)
        return messages, found, (time.perf_counter() - t0) * 1e3

    # --- replies ---------------------------------------------------------------------------
    def rule_checker(self) -> Any:
        """The domain rules' checker (by pattern, and by meaning with the pack's embedder), built once."""
        if self._checker is None:
            from .rulecheck import RuleChecker

            self._checker = RuleChecker(self.rules, self.retriever.embedder if self.retriever is not None else None)
        return self._checker

    def rule_violations(self, text: str) -> list[str]:
        """Ids of the domain rules `text` breaks, by pattern and (where rules carry examples) by meaning."""
        return list(self.rule_checker().violations(text))

    def grounding(self) -> Any:
        """The grounded mode's parts (planner, fact tracker, rule checker), built once."""
        if self._grounded is None:
            from .grounding import Grounding

            self._grounded = Grounding.for_agent(self)
        return self._grounded

    def stream(self, history: Sequence[Message], *, generation: GenerationConfig | None = None,
               retrieval: RetrievalConfig | None = None, prompting: PromptConfig | None = None) -> ReplyStream:
        """Answer the latest customer message; iterate for text pieces, then read `.reply`.

        The prompting mode picks the turn plan (edge_agent.plans): generate, adapt or grounded.
        """
        from .plans import plan_for

        if not history:
            raise ConfigError("the conversation is empty; add a customer message")
        pcfg = prompting or self.prompting
        return plan_for(pcfg.mode).stream(self, history, generation=generation or self.generation,
                                          retrieval=retrieval, prompting=pcfg)

    def reply(self, history: Sequence[Message], **kwargs: Any) -> Reply:
        stream = self.stream(history, **kwargs)
        for _ in stream:
            pass
        if stream.reply is None:  # pragma: no cover - the iterator always finishes
            raise RuntimeError("stream ended without a reply")
        return stream.reply

