"""Fitting a conversation into the student's context window, as HTTP errors.

The trimming itself is `edge_agent.history` (shared with `edge-agent chat`); here a message that
cannot fit even alone becomes a 400 `context_length_exceeded`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import history as _history
from ..history import byte_bound
from .schemas import ApiError

__all__ = ["byte_bound", "fit_history", "trim_history"]

History = list[dict[str, str]]
TOO_LONG = ("the last message alone does not fit the model's context window; shorten it, or start the server "
            "with a larger --n-ctx")


def trim_history(history: Sequence[Mapping[str, str]], fits: Callable[[History], bool]) -> tuple[History, int]:
    """`edge_agent.history.trim_history`, raising ApiError (400) when the last message cannot fit."""
    try:
        return _history.trim_history(history, fits)
    except _history.ContextOverflow:
        raise ApiError(400, TOO_LONG, param="messages", code="context_length_exceeded") from None


def fit_history(agent: Any, history: Sequence[Mapping[str, str]], max_tokens: int) -> tuple[History, int]:
    """`edge_agent.history.fit_history`, raising ApiError (400) when the last message cannot fit."""
    try:
        return _history.fit_history(agent, history, max_tokens)
    except _history.ContextOverflow:
        raise ApiError(400, TOO_LONG, param="messages", code="context_length_exceeded") from None
