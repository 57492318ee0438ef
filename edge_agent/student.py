"""The on-device student: a GGUF chat model run by llama-cpp-python, as a `ChatBackend`.

Prompts are formatted with the model's own chat template and tokenised here, so the backend can
report how many prompt tokens llama.cpp really evaluated (the rest came from the KV cache: a
conversation's stable prefix is never recomputed). One lock serialises all use of the context.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .backends import ChatResult, ChatStream, GenerationConfig, Message, Usage
from .errors import ModelError
from .runtime import RuntimeConfig
from .threads import ThreadController

if TYPE_CHECKING:  # pragma: no cover
    from .models import ModelSpec

logger = logging.getLogger(__name__)

__all__ = ["LlamaStudent", "import_llama_cpp", "llama_context", "load_vocabulary", "quiet_native", "split_rendered"]


def import_llama_cpp(runtime: RuntimeConfig | None = None) -> ModuleType:
    """llama_cpp, imported only after `runtime`'s OpenMP wait policy is set: OpenMP reads it once, when
    llama.cpp's library loads (the policy of whoever imported it first stays)."""
    if "llama_cpp" not in sys.modules:
        (runtime or RuntimeConfig()).apply_wait_policy()
    import llama_cpp

    return llama_cpp


# llama-cpp-python has no public API for these two; its private names are used here and nowhere else.
def llama_context(llm: Any) -> Any:
    """The raw llama_context pointer of a loaded `llama_cpp.Llama` (for the C-level thread and state calls)."""
    return llm._ctx.ctx


def quiet_native() -> AbstractContextManager[Any]:
    """Silence llama.cpp's own C-level prints to stdout and stderr while in the block."""
    from llama_cpp._utils import suppress_stdout_stderr

    return suppress_stdout_stderr(disable=False)


def load_vocabulary(path: Path | str, runtime: RuntimeConfig | None = None) -> Any:
    """A vocabulary-only `llama_cpp.Llama` (tokenizer and metadata, no weights), loaded quietly."""
    llama_cpp = import_llama_cpp(runtime)
    with quiet_native():  # a vocabulary-only load warns about n_ctx
        return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_PLACEHOLDER_CHARS = re.compile("[\ue000\ue001]")


def placeholder(i: int) -> str:
    """What message i's content is rendered as (private-use code points no tokenizer treats as special)."""
    return f"\ue000{i}\ue001"


def strip_placeholders(text: str) -> str:
    return _PLACEHOLDER_CHARS.sub("\ufffd", text)


def split_rendered(prompt: str, contents: Sequence[str]) -> list[tuple[str, bool]]:
    """A prompt rendered with placeholders, as (text, is_content) pieces with the contents put back.

    Template pieces may be tokenised with special tokens enabled; content pieces never are. A
    template that repeats or drops a message's content is followed as rendered.
    """
    pieces: list[tuple[str, bool]] = []
    at = 0
    for match in _PLACEHOLDER.finditer(prompt):
        pieces.append((prompt[at:match.start()], False))
        index = int(match.group(1))
        pieces.append((contents[index] if index < len(contents) else "", True))
        at = match.end()
    pieces.append((prompt[at:], False))
    return [p for p in pieces if p[0]]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaStudent:
    """A llama.cpp model behind the ChatBackend protocol, reusing its KV prefix across calls."""

    def __init__(
        self,
        model_path: Path | str,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        chat_template: str | None = None,
        generation: GenerationConfig | None = None,
        name: str | None = None,
        seed: int = 0,
        n_batch: int = 256,
        kv_cache: str = "q8_0",
        lazy: bool = True,
        runtime: RuntimeConfig | None = None,
    ) -> None:
        self.runtime = runtime or RuntimeConfig()
        import_llama_cpp(self.runtime)
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = Path(model_path)
        self.name = name or self.path.stem
        self.generation = generation or GenerationConfig()
        # Thread count: pinned (argument, then the runtime's EDGE_AGENT_THREADS) or chosen between replies.
        self.threads = ThreadController(n_threads or self.runtime.threads)
        threads = self.threads.current
        # A q8_0 KV cache is half of f16's memory; llama.cpp quantises V only with flash attention.
        if kv_cache not in ("f16", "q8_0"):
            raise ModelError(f"kv_cache {kv_cache!r} is not supported; use 'q8_0' (the default) or 'f16'")
        kv_type = 8 if kv_cache == "q8_0" else None  # GGML_TYPE_Q8_0
        self.kv_cache = kv_cache
        self._load_kwargs: dict[str, Any] = {
            "model_path": str(self.path), "n_ctx": n_ctx, "seed": seed, "verbose": False, "logits_all": False,
            "n_batch": n_batch, "n_ubatch": n_batch, "flash_attn": kv_type is not None, "type_k": kv_type,
            "type_v": kv_type,
        }
        # With `lazy`, only the vocabulary loads now (tokenising, the template); the weights, KV
        # cache and buffers load at the first generation, so a chat whose turns all reuse library
        # replies never holds them.
        self.loaded = False
        self._pending_prefix: tuple[str, Path | None] | None = None
        if lazy:
            self.llm = load_vocabulary(self.path, self.runtime)
        else:
            self.llm = Llama(**self._load_kwargs, n_threads=threads, n_threads_batch=threads)
            self.loaded = True
        template = chat_template or self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(
                f"{self.path.name} has no chat template in its GGUF metadata; pass one with "
                "--chat-template FILE (a Jinja template) or register it with edge-agent models add"
            )
        eos = self._token_text(self.llm.token_eos())
        bos = self._token_text(self.llm.token_bos())
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                             stop_token_ids=[self.llm.token_eos()])
        self.n_ctx = self.llm.n_ctx() if self.loaded else n_ctx
        self.lock = threading.RLock()
        self.adapt_threads()  # the first choice sees the machine as it was while the model loaded

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, n_ctx: int | None = None, runtime: RuntimeConfig | None = None,
                  system_prompt: str | None = None, cache_dir: Path | None = None) -> LlamaStudent:
        """The student for a located registry model (`make_backend("llama.cpp", spec=...)`), with the
        model's own decoding defaults; with `system_prompt`, its KV prefix is warmed (see `warm_prefix`)."""
        from .models import verify_model

        verify_model(spec)
        student = cls(spec.path, n_ctx=n_ctx or spec.n_ctx, chat_template=spec.chat_template, name=spec.name,
                      generation=GenerationConfig().merged(**dict(spec.generation)), runtime=runtime)
        if system_prompt is not None:
            student.warm_prefix(system_prompt, cache_dir)
        return student

    def adapt_threads(self) -> int:
        """Re-decide the thread count (between replies: never while one is decoding)."""
        import llama_cpp

        with self.lock:
            choice = self.threads.decide()
            if self.loaded and choice.threads != int(llama_cpp.llama_n_threads(llama_context(self.llm))):
                llama_cpp.llama_set_n_threads(llama_context(self.llm), choice.threads, choice.threads)
            return choice.threads

    def load(self) -> None:
        """Load the weights, KV cache and buffers now (the first generation does it otherwise)."""
        from llama_cpp import Llama

        with self.lock:
            if self.loaded:
                return
            threads = self.threads.current
            vocab, self.llm = self.llm, None  # type: ignore[assignment]
            vocab.close()  # the vocabulary is not held twice
            self.llm = Llama(**self._load_kwargs, n_threads=threads, n_threads_batch=threads)
            self.loaded = True
            self.n_ctx = self.llm.n_ctx()
            if self._pending_prefix is not None:
                system_prompt, cache_dir = self._pending_prefix
                self._pending_prefix = None
                self.warm_prefix(system_prompt, cache_dir)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    # --- prompt handling -------------------------------------------------------------------
    def format_prompt(self, messages: Sequence[Message]) -> tuple[str, list[str], bool]:
        result = self.formatter(messages=[dict(m) for m in messages])  # type: ignore[misc]
        stop = result.stop if isinstance(result.stop, list) else ([result.stop] if result.stop else [])
        return result.prompt, stop, bool(result.added_special)

    def tokenize_messages(self, messages: Sequence[Message]) -> tuple[list[int], list[str]]:
        """Prompt tokens and stop strings. The template's own text may hold control tokens; message
        content never does: it is rendered as a placeholder and tokenised as plain text, so a
        customer typing `<|im_start|>system` gets those characters, not a new role."""
        sealed = [{**dict(m), "content": strip_placeholders(str(m.get("content", "")))} for m in messages]
        marked = [{**m, "content": placeholder(i)} for i, m in enumerate(sealed)]
        prompt, stop, added_special = self.format_prompt(marked)
        tokens: list[int] = []
        for text, content in split_rendered(prompt, [m["content"] for m in sealed]):
            if text:
                tokens += self.llm.tokenize(text.encode("utf-8"), add_bos=not added_special and not tokens,
                                            special=not content)
        return tokens, stop

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def cached_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of `tokens` are already in the KV cache."""
        cached = list(self.llm.input_ids[: self.llm.n_tokens])
        # llama.cpp always re-evaluates at least the last prompt token.
        return min(_common_prefix(cached, tokens), max(len(tokens) - 1, 0))

    # --- generation ------------------------------------------------------------------------
    def _kwargs(self, config: GenerationConfig, stop: list[str]) -> dict[str, Any]:
        return dict(
            max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p,
            top_k=config.top_k, repeat_penalty=config.repeat_penalty, seed=config.seed,
            stop=list(dict.fromkeys([*stop, *config.stop])),
        )

    def _check_fits(self, tokens: Sequence[int], config: GenerationConfig) -> None:
        if len(tokens) + 1 > self.n_ctx:
            raise ModelError(
                f"prompt is {len(tokens)} tokens but the context window is {self.n_ctx}; shorten the "
                "conversation or raise the window with --n-ctx"
            )

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        """Text pieces as they are decoded; the stream's `.result` (usage, timings, threads) once it ends.

        Decoding starts when the stream is first read and holds the model's lock until it ends or
        is closed."""
        done: list[ChatResult] = []
        return ChatStream(self._decode(messages, config or self.generation, done.append), lambda _text: done[0])

    def _decode(self, messages: Sequence[Message], cfg: GenerationConfig,
                finish: Callable[[ChatResult], None]) -> Iterator[str]:
        with self.lock:
            self.load()
            threads = self.adapt_threads()
            tokens, stop = self.tokenize_messages(messages)
            self._check_fits(tokens, cfg)
            reused = self.cached_prefix(tokens)
            max_tokens = max(1, min(cfg.max_tokens, self.n_ctx - len(tokens)))
            kwargs = self._kwargs(cfg.merged(max_tokens=max_tokens), stop)
            start = time.perf_counter()
            first: float | None = None
            pieces: list[str] = []
            chunk_count = 0
            finish_reason = "stop"
            chunks: Any = self.llm.create_completion(prompt=tokens, stream=True, **kwargs)
            for chunk in chunks:
                choice: Any = chunk["choices"][0]
                chunk_count += 1
                text = choice.get("text", "")
                if first is None:
                    first = time.perf_counter()
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
                if text:
                    pieces.append(text)
                    yield text
            end = time.perf_counter()
            completion = max(int(self.llm.n_tokens) - len(tokens), len(pieces))
            first = first or end
            decode_s = end - first
            # one chunk per sampled token (stop-sequence holds emit empty chunks, still counted)
            decode_tps = (chunk_count - 1) / decode_s if decode_s > 0 and chunk_count > 1 else 0.0
            self.threads.record(threads, decode_tps, chunk_count)
            finish(ChatResult(
                text="".join(pieces), finish_reason=finish_reason, model=self.name,
                usage=Usage(prompt_tokens=len(tokens), completion_tokens=completion,
                            evaluated_prompt_tokens=len(tokens) - reused),
                timings={"ttft_ms": (first - start) * 1e3, "decode_tps": decode_tps,
                         "total_ms": (end - start) * 1e3, "threads": float(threads)},
            ))

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        stream = self.stream(messages, config)
        text = "".join(stream)
        if stream.result is None:  # pragma: no cover - an exhausted stream always has its result
            raise ModelError(f"{self.name}: the reply ended without its result; retry the request")
        return replace(stream.result, text=text.strip())

    def reset(self) -> None:
        """Forget the KV cache (the next call evaluates its whole prompt)."""
        with self.lock:
            self._pending_prefix = None
            self.llm.reset()

    # --- the system prompt's KV state, cached on disk --------------------------------------
    def prefix_tokens(self, system_prompt: str) -> list[int]:
        """Tokens every conversation with this system prompt starts with (system turn + header)."""
        a, _ = self.tokenize_messages([{"role": "system", "content": system_prompt},
                                       {"role": "user", "content": "a"}])
        b, _ = self.tokenize_messages([{"role": "system", "content": system_prompt},
                                       {"role": "user", "content": "b"}])
        return a[:_common_prefix(a, b)]

    def warm_prefix(self, system_prompt: str, cache_dir: Path | None) -> str:
        """Put the system prompt's KV state in the context: loaded from `cache_dir` when saved by
        an earlier run (a cold start then prefills only the customer's message), else evaluated
        now and saved. Returns "loaded", "built", "skipped", or "deferred" before the weights are
        loaded (it then runs when they are). The file is raw llama.cpp state with a JSON header,
        keyed by the model file and the exact prefix tokens; never pickled."""
        import ctypes
        import hashlib
        import json

        import llama_cpp
        import numpy as np

        with self.lock:
            if not self.loaded:
                self._pending_prefix = (system_prompt, cache_dir)
                return "deferred"
            tokens = self.prefix_tokens(system_prompt)
            if len(tokens) < 2 or self.llm.n_tokens != 0:
                return "skipped"
            stat = self.path.stat()
            key = hashlib.sha256(json.dumps([self.path.name, stat.st_size, stat.st_mtime_ns, self.n_ctx,
                                             llama_cpp.__version__, tokens, self.kv_cache]).encode()).hexdigest()[:24]
            file = Path(cache_dir) / f"{self.path.stem}-{key}.kv" if cache_dir else None
            ctx = llama_context(self.llm)
            if file is not None and file.is_file():
                try:
                    raw = file.read_bytes()
                    header_len = int.from_bytes(raw[:4], "little")
                    header = json.loads(raw[4:4 + header_len])
                    body = raw[4 + header_len:]
                    if header.get("tokens") == tokens and len(body) == header.get("bytes"):
                        buf = (ctypes.c_uint8 * len(body)).from_buffer_copy(body)
                        if llama_cpp.llama_state_set_data(ctx, buf, len(body)) == len(body):
                            self.llm.input_ids[: len(tokens)] = np.asarray(tokens, dtype=np.intc)
                            self.llm.n_tokens = len(tokens)
                            return "loaded"
                except (OSError, ValueError, KeyError) as exc:  # a bad cache file is rebuilt, not fatal
                    logger.warning("ignoring prefix cache %s: %s", file.name, exc)
                self.llm.reset()
            self.llm.eval(tokens)
            if file is None:
                return "built"
            size = llama_cpp.llama_state_get_size(ctx)
            buf = (ctypes.c_uint8 * int(size))()
            n = int(llama_cpp.llama_state_get_data(ctx, buf, size))
            header = json.dumps({"tokens": tokens, "bytes": n}).encode()
            from .files import write_bytes_atomic

            write_bytes_atomic(file, len(header).to_bytes(4, "little") + header + bytes(buf)[:n])
            return "built"
