"""`RuntimeConfig`: the process settings the environment gives, read once at the CLI or server edge.

`RuntimeConfig.from_env()` parses EDGE_AGENT_THREADS, EDGE_AGENT_WAIT_POLICY, EDGE_AGENT_EMBED_THREADS
and EDGE_AGENT_DEBUG; the result is passed down (`Agent.from_pack`, the student, the embedder).
Objects built in code without one get the defaults below; nothing under the edges reads the
environment itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from .errors import ConfigError
from .threads import apply_wait_policy, parse_threads, parse_wait_policy

__all__ = ["DEBUG_VAR", "RuntimeConfig", "debug_enabled"]

DEBUG_VAR = "EDGE_AGENT_DEBUG"


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """EDGE_AGENT_DEBUG set to anything: unexpected errors propagate with their traceback."""
    return bool((os.environ if env is None else env).get(DEBUG_VAR))


def _embed_threads(value: str | None) -> int:
    text = (value or "").strip()
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= 512:
        raise ConfigError(f"EDGE_AGENT_EMBED_THREADS={value!r} is not a thread count; use a whole number from "
                          "1 to 512 (e.g. EDGE_AGENT_EMBED_THREADS=1)")
    return int(text)


@dataclass(frozen=True)
class RuntimeConfig:
    """How this process runs its models.

    `threads`: llama.cpp's thread count, None to choose it between replies (EDGE_AGENT_THREADS=N|auto);
    `wait_policy`: how OpenMP's idle threads wait (EDGE_AGENT_WAIT_POLICY=auto|spin|passive|active);
    `embed_threads`: the ONNX embedder's threads (EDGE_AGENT_EMBED_THREADS); `debug`: tracebacks
    instead of one-line errors (EDGE_AGENT_DEBUG).

    >>> RuntimeConfig.from_env({"EDGE_AGENT_THREADS": "2", "EDGE_AGENT_WAIT_POLICY": "passive"})
    RuntimeConfig(threads=2, wait_policy='passive', embed_threads=1, debug=False)
    """

    threads: int | None = None
    wait_policy: str = "auto"
    embed_threads: int = 1
    debug: bool = False

    def __post_init__(self) -> None:
        parse_wait_policy(self.wait_policy)  # a ConfigError naming the valid policies
        if self.threads is not None:
            parse_threads(self.threads)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeConfig:
        """The settings `env` (default: this process's environment) gives; a bad value is a ConfigError."""
        env = os.environ if env is None else env
        return cls(threads=parse_threads(env.get("EDGE_AGENT_THREADS")),
                   wait_policy=parse_wait_policy(env.get("EDGE_AGENT_WAIT_POLICY")),
                   embed_threads=_embed_threads(env.get("EDGE_AGENT_EMBED_THREADS")),
                   debug=debug_enabled(env))

    def apply_wait_policy(self, env: MutableMapping[str, str] | None = None) -> str:
        """Set OpenMP's wait variables in `env` (default: this process's environment); returns what applies.

        Only takes effect before llama.cpp's library loads (`edge_agent.student` calls it then);
        OMP_WAIT_POLICY, GOMP_SPINCOUNT or KMP_BLOCKTIME set by the user win.
        """
        return apply_wait_policy(self.wait_policy, os.environ if env is None else env)
