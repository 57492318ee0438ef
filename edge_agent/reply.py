"""What one agent turn returns: `Reply` (text, route, reason, hits, usage, timings) and `ReplyStream`.

A leaf of the turn modules: the agent, every turn plan and the server build these, and nothing
here imports them back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .backends import Usage
from .retrieval import Hit

__all__ = ["Reply", "ReplyStream"]


@dataclass(frozen=True)
class Reply:
    """One agent turn: the text, the strategies that were injected (with scores) and timings (ms)."""

    text: str
    hits: list[Hit] = field(default_factory=list)
    timings: Mapping[str, float] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    prompt: list[dict[str, str]] = field(default_factory=list)
    mode: str = ""
    finish_reason: str = "stop"
    route: str = ""  # grounded: exemplar|generated|clarify|handoff; adapt: "exemplar", "revised", "fallback:<why>"
    reason: str = ""  # why this route was taken (grounded mode)
    candidates: list[Any] = field(default_factory=list)  # planner.Candidate per entry considered
    facts: Mapping[str, Any] = field(default_factory=dict)  # facts established in this conversation
    strategy_id: str = ""  # the library entry whose reply was used, if any

    def to_json(self) -> dict[str, Any]:
        grounded = {"reason": self.reason, "candidates": [c.to_json() for c in self.candidates],
                    "facts": dict(self.facts), "strategy_id": self.strategy_id} if self.reason else {}
        return {
            "text": self.text,
            "strategies": [h.to_json() for h in self.hits],
            "timings_ms": {k: round(v, 2) for k, v in self.timings.items()},
            "usage": {"prompt_tokens": self.usage.prompt_tokens,
                      "completion_tokens": self.usage.completion_tokens,
                      "evaluated_prompt_tokens": self.usage.evaluated_prompt_tokens},
            "mode": self.mode,
            "finish_reason": self.finish_reason,
            **({"route": self.route} if self.route else {}),
            **grounded,
        }


class ReplyStream:
    """Iterate to get text pieces as they are generated; `.reply` is set once it is exhausted."""

    def __init__(self, pieces: Iterator[str], finish: Any) -> None:
        self._pieces = pieces
        self._finish = finish
        self._text: list[str] = []
        self.reply: Reply | None = None

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self._text.append(piece)
            yield piece
        self.reply = self._finish("".join(self._text))

    def close(self) -> None:
        """Stop generating now: the student's lock and KV state are released at once."""
        close = getattr(self._pieces, "close", None)
        if callable(close):
            close()
