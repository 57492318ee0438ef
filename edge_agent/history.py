"""Fitting a conversation into the student's context window by dropping its oldest turns.

`trim_history` is pure: given a `fits` test it drops the fewest oldest turns, always keeping
system messages and the last customer message. `fit_history` measures the rendered prompt with
the student's own tokenizer, and only when a cheap upper bound says it might not fit. Used by
`edge-agent chat` and, through `edge_agent.server.context`, by the server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .backends import LocalModel
from .errors import ModelError
from .rendering import render_prompt

__all__ = ["ContextOverflow", "byte_bound", "fit_history", "trim_history"]

History = list[dict[str, str]]
# Chat-template tokens a message adds around its content (role markers, separators), generously.
PER_MESSAGE_OVERHEAD = 8


class ContextOverflow(ModelError):
    """Even the last message alone does not fit the context window."""


def trim_history(history: Sequence[Mapping[str, str]], fits: Callable[[History], bool]) -> tuple[History, int]:
    """The history without its oldest turns, as few dropped as make `fits` true; and how many.

    A reply must not open the kept conversation, so an assistant turn left at the front goes too.
    Raises ContextOverflow when even the last message alone does not fit.
    """
    items = [dict(m) for m in history]
    turns = [i for i, m in enumerate(items) if m["role"] != "system"]
    droppable = turns[:-1]  # the last message is the customer's and always stays

    def without(k: int) -> History:
        gone = set(droppable[:k])
        # after the cut, skip assistant turns until the first customer one
        for i in droppable[k:]:
            if items[i]["role"] != "assistant":
                break
            gone.add(i)
        return [m for i, m in enumerate(items) if i not in gone]

    if fits(items):
        return items, 0
    if not fits(without(len(droppable))):
        raise ContextOverflow("the last message alone does not fit the model's context window; shorten it "
                              "or raise the window with --n-ctx")
    lo, hi = 1, len(droppable)  # fits(without(hi)) holds; find the smallest such k
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(without(mid)):
            hi = mid
        else:
            lo = mid + 1
    kept = without(lo)
    return kept, len(items) - len(kept)


def byte_bound(system_prompt: str, history: Sequence[Mapping[str, str]], guidance_tokens: int) -> int:
    """An upper bound on prompt tokens: a BPE token covers at least one byte of text."""
    text = len(system_prompt.encode("utf-8")) + sum(len(str(m.get("content", "")).encode("utf-8")) for m in history)
    return text + PER_MESSAGE_OVERHEAD * (len(history) + 1) + guidance_tokens


def fit_history(agent: Any, history: Sequence[Mapping[str, str]], max_tokens: int) -> tuple[History, int]:
    """The history trimmed so prompt + reply room fit the student's window; and turns dropped.

    The room kept for the reply is `max_tokens`, but never more than half the window. Students
    that are not a `LocalModel` (no window or tokenizer of their own: test fakes) are not trimmed.
    """
    items = [dict(m) for m in history]
    student = agent.student
    if not isinstance(student, LocalModel):
        return items, 0
    n_ctx, tokenize = int(student.n_ctx), student.tokenize_messages
    budget = n_ctx - min(max_tokens, n_ctx // 2)
    guidance = int(getattr(agent.retrieval, "budget_tokens", 0)) + 16
    if byte_bound(agent.system_prompt, items, guidance) <= budget:
        return items, 0
    hits = agent.retrieve(items).hits

    def fits(candidate: History) -> bool:
        messages = render_prompt(agent.system_prompt, candidate, hits, agent.prompting)
        return len(tokenize(messages)[0]) + 16 <= budget

    return trim_history(items, fits)
