"""The one seam for chat models: `ChatBackend`, its result types, fakes and the registry of backends.

Teacher, student, customer simulator, judge and test fakes all take OpenAI-style messages
(`[{"role": ..., "content": ...}]`) and return a `ChatResult` (or a `ChatStream` ending in one).
`LocalModel` declares what a model run in this process adds (its window and tokenizer). Backends
are made by name (`make_backend`): "scripted", "mock" and "llama.cpp" (`edge_agent.student`,
imported only when asked for); network backends live in `distill`.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from .errors import BackendError, ConfigError

__all__ = [
    "Message",
    "Usage",
    "ChatResult",
    "GenerationConfig",
    "ChatBackend",
    "ChatStream",
    "LocalModel",
    "ScriptedChat",
    "mock_chat",
    "LLAMA_CPP",
    "register_backend",
    "make_backend",
    "backend_names",
]

Message = Mapping[str, str]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens actually evaluated (not served from the KV cache); llama.cpp only.
    evaluated_prompt_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatResult:
    """What one call returned. `timings` holds what the backend measured: for llama.cpp `ttft_ms`,
    `decode_tps`, `total_ms` and `threads` (the thread count it decoded with)."""

    text: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    model: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings; defaults suit small students (see models/registry.toml per model)."""

    max_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    repeat_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "GenerationConfig":
        """A checked [generation] table: unknown keys and values of the wrong type are errors."""
        from .keys import check_keys

        check_keys(data, cls.__dataclass_fields__, "generation settings")
        values: dict[str, Any] = {}
        for key, value in data.items():
            default = cls.__dataclass_fields__[key].default
            if key == "stop":
                if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
                    raise ConfigError(f"generation setting stop must be a list of strings, got {value!r}")
                value = tuple(value)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    isinstance(default, int) and not isinstance(value, int)):
                want = "a whole number" if isinstance(default, int) else "a number"
                raise ConfigError(f"generation setting {key} must be {want}, got {value!r} (e.g. {key} = {default})")
            values[key] = value
        return cls(**values)

    def merged(self, **overrides: Any) -> "GenerationConfig":
        values = {k: v for k, v in overrides.items() if v is not None}
        if "stop" in values:
            values["stop"] = tuple(values["stop"])
        try:
            return GenerationConfig(**{**self.__dict__, **values})
        except TypeError as exc:
            raise ConfigError(f"unknown generation setting: {exc}; valid ones: "
                              f"{', '.join(self.__dict__)}") from None


class ChatStream:
    """Text pieces as they are decoded; `result` (usage, finish reason, timings) once exhausted.

    What `ChatBackend.stream` returns, so a caller learns what a streamed call cost from the call
    itself, never from an attribute the backend set on the side.

    >>> s = ChatStream.of(ChatResult("Hello there", Usage(3, 2)))
    >>> "".join(s), s.result.usage.completion_tokens
    ('Hello there', 2)
    """

    def __init__(self, pieces: Iterable[str], finish: Callable[[str], ChatResult]) -> None:
        self._pieces = iter(pieces)
        self._finish = finish
        self._text: list[str] = []
        self._closed = False
        self.result: ChatResult | None = None

    @classmethod
    def of(cls, result: ChatResult) -> "ChatStream":
        """A finished call as a stream of one piece (for backends that cannot stream)."""
        return cls([result.text] if result.text else [], lambda _text: result)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._closed:  # a stream stopped early has no result
            raise StopIteration
        try:
            piece = next(self._pieces)
        except StopIteration:
            if self.result is None:
                self.result = self._finish("".join(self._text))
            raise
        self._text.append(piece)
        return piece

    def close(self) -> None:
        """Stop decoding now (the backend releases its model lock and KV state); a stream closed before
        its end keeps `result` None."""
        self._closed = True
        close = getattr(self._pieces, "close", None)
        if callable(close):
            close()


@runtime_checkable
class ChatBackend(Protocol):
    """Messages in, text and usage out: `chat` returns a `ChatResult`; `stream` returns a `ChatStream`
    (text pieces, then the same `ChatResult` as `.result`; `ChatStream.of` where it cannot stream)."""

    name: str

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        ...

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        ...


@runtime_checkable
class LocalModel(Protocol):
    """What a model run in this process adds: its context window and its own tokenizer (for sizing
    prompts and counting reply tokens). Backends without these are estimated, never trimmed."""

    n_ctx: int

    def count_tokens(self, text: str) -> int:
        ...

    def tokenize_messages(self, messages: Sequence[Message]) -> tuple[list[int], list[str]]:
        """The prompt's tokens and its stop strings, as the model would see them."""
        ...


class ScriptedChat:
    """A fake backend that replies from a queue (or a function) and records every call.

    >>> fake = ScriptedChat(["Hello!"])
    >>> fake.chat([{"role": "user", "content": "hi"}]).text
    'Hello!'
    >>> fake.calls[0][-1]["content"]
    'hi'
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[[Sequence[Message]], str] = (),
        name: str = "scripted",
        default: str | None = None,
    ) -> None:
        self.name = name
        self._fn = replies if callable(replies) else None
        self._queue = [] if callable(replies) else list(replies)
        self._default = default
        self._lock = threading.Lock()
        self.calls: list[list[dict[str, str]]] = []
        self.configs: list[GenerationConfig | None] = []

    def _next(self, messages: Sequence[Message]) -> str:
        with self._lock:
            self.calls.append([dict(m) for m in messages])
            if self._fn is not None:
                return self._fn(messages)
            if self._queue:
                return self._queue.pop(0)
            if self._default is not None:
                return self._default
        raise BackendError(f"{self.name}: the scripted reply queue is empty; add more replies")

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatResult:
        self.configs.append(config)
        text = self._next(messages)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=len(text.split()))
        return ChatResult(text=text, usage=usage, model=self.name)

    def stream(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> ChatStream:
        """The reply word by word; the call is made (and recorded) when the stream is first read."""
        done: list[ChatResult] = []

        def pieces() -> Iterator[str]:
            done.append(self.chat(messages, config))
            for i, word in enumerate(done[0].text.split(" ")):
                yield word if i == 0 else " " + word

        return ChatStream(pieces(), lambda _text: done[0])


def mock_chat() -> ScriptedChat:
    """`--model mock`: a scripted student that answers instantly, for demos of the plumbing and tests."""

    def answer(messages: Sequence[Message]) -> str:
        guided = "AGENT GUIDANCE" in str(messages[-1].get("content", ""))
        return ("Thanks for reaching out. I have noted your request" +
                (" and will follow our guidance for this case." if guided else "."))

    return ScriptedChat(answer, name="mock")


def _llama_cpp(**options: Any) -> ChatBackend:
    """A GGUF run by llama.cpp; options as `LlamaStudent.from_spec`. The module is looked up on first
    use (like the CLI's lazy commands), so naming backends never loads llama.cpp."""
    student: Any = importlib.import_module(f"{__package__}.student")
    return student.LlamaStudent.from_spec(**options)


LLAMA_CPP = "llama.cpp"
_REGISTRY: dict[str, Callable[..., ChatBackend]] = {"scripted": ScriptedChat, "mock": mock_chat,
                                                    LLAMA_CPP: _llama_cpp}


def register_backend(name: str, factory: Callable[..., ChatBackend]) -> None:
    """Make a backend constructible by name (e.g. from a config file or `--model NAME`)."""
    _REGISTRY[name] = factory


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def make_backend(name: str, **kwargs: Any) -> ChatBackend:
    """The backend registered as `name`, made with `kwargs`; a ConfigError listing the names if none is."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown backend {name!r}; valid names: {', '.join(backend_names())}"
        ) from None
    return factory(**kwargs)
