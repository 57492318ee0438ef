"""One rule for settings tables everywhere: an unknown key is an error that names the valid keys.

Domain files, pack settings, server config, model registry entries, fact specs, suites and the
tuning and planner knobs all read tables a person typed. A misspelt key that is silently ignored
leaves a setting at its default without a word, so every reader calls `check_keys` instead.

>>> check_keys({"top_k": 3}, ["top_k", "threshold"], "[retrieval]")
>>> check_keys({"topk": 3}, ["top_k", "threshold"], "[retrieval]")
Traceback (most recent call last):
...
edge_agent.errors.ConfigError: [retrieval]: unknown key 'topk' (did you mean 'top_k'?); valid keys: threshold, top_k
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["check_keys", "unknown_keys_message"]


def unknown_keys_message(unknown: Iterable[str], valid: Iterable[str], where: str) -> str | None:
    """The one-line message for `unknown` keys (None when there are none)."""
    extra = sorted(str(k) for k in unknown)
    if not extra:
        return None
    allowed = sorted(str(k) for k in valid)
    near = difflib.get_close_matches(extra[0], allowed, n=1, cutoff=0.6) if len(extra) == 1 else []
    names = ", ".join(repr(k) for k in extra)
    label = "unknown key" if len(extra) == 1 else "unknown keys"
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    prefix = f"{where}: " if where else ""
    return f"{prefix}{label} {names}{hint}; valid keys: {', '.join(allowed) or '(none)'}"


def check_keys(data: Mapping[str, Any], valid: Iterable[str], where: str = "",
               error: Callable[[str], Exception] = ConfigError) -> None:
    """Raise `error` (ConfigError by default) when `data` has a key outside `valid`."""
    allowed = set(valid)
    message = unknown_keys_message((k for k in data if k not in allowed), allowed, where)
    if message is not None:
        raise error(message)
