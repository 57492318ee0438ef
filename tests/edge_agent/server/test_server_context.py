"""Fitting conversations into the context window: drop oldest turns, keep system + last message."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.server.context import byte_bound, fit_history, trim_history
from edge_agent.server.schemas import ApiError


def conv(*spec: str) -> list[dict[str, str]]:
    roles = {"s": "system", "u": "user", "a": "assistant"}
    return [{"role": roles[s[0]], "content": s} for s in spec]


def budget(n: int) -> Any:
    """fits() for a budget of n messages' worth of content (1 unit per character)."""
    return lambda h: sum(len(m["content"]) for m in h) <= n


@pytest.mark.parametrize("history,limit,kept,dropped", [
    (conv("u1", "a1", "u2"), 100, ["u1", "a1", "u2"], 0),
    (conv("u1", "a1", "u2"), 4, ["u2"], 2),  # an assistant turn never opens the kept conversation
    (conv("u1", "a1", "u2", "a2", "u3"), 6, ["u2", "a2", "u3"], 2),
    (conv("s0", "u1", "a1", "u2", "a2", "u3"), 8, ["s0", "u2", "a2", "u3"], 2),  # system stays
    (conv("s0", "u1", "a1", "u2", "a2", "u3"), 4, ["s0", "u3"], 4),
    (conv("u1", "u2", "u3"), 4, ["u2", "u3"], 1),
])
def test_trim_history(history: list[dict[str, str]], limit: int, kept: list[str], dropped: int) -> None:
    out, n = trim_history(history, budget(limit))
    assert [m["content"] for m in out] == kept and n == dropped


def test_last_message_alone_too_long_is_400() -> None:
    with pytest.raises(ApiError) as err:
        trim_history(conv("u1", "a1", "u2-is-long"), budget(5))
    assert err.value.status == 400 and err.value.code == "context_length_exceeded"


def test_byte_bound_is_an_upper_bound_on_words() -> None:
    history = conv("u hello there", "a general kenobi")
    assert byte_bound("sys", history, 10) >= sum(len(m["content"].split()) for m in history) + 10


class WordStudent(ScriptedChat):
    """A fake with a tokenizer (one token per word) and a small window."""

    n_ctx = 100

    def tokenize_messages(self, messages: Sequence[Any]) -> tuple[list[int], list[str]]:
        return [0] * sum(len(str(m["content"]).split()) + 2 for m in messages), []

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_fit_history_trims_with_the_students_tokenizer(hash_pack: Path) -> None:
    agent = Agent.from_pack(hash_pack, student=WordStudent(default="ok"))
    long_turns = [{"role": r, "content": f"turn {i} " + "word " * 8}
                  for i, r in enumerate(["user", "assistant"] * 4)]
    history = long_turns + [{"role": "user", "content": "my internet is down since yesterday"}]
    kept, dropped = fit_history(agent, history, max_tokens=10)
    assert dropped > 0 and kept[-1] == history[-1] and kept[0]["role"] == "user"
    assert kept == history[dropped:]
    short = [{"role": "user", "content": "hi"}]
    assert fit_history(agent, short, max_tokens=10) == (short, 0)


def test_trimmed_turns_reported_in_the_extension(hash_pack: Path) -> None:
    import openai

    from tests.server_support import running_server

    student = WordStudent(default="ok")
    agent = Agent.from_pack(hash_pack, student=student)
    history = [{"role": r, "content": f"turn {i} " + "word " * 8} for i, r in enumerate(["user", "assistant"] * 4)]
    history.append({"role": "user", "content": "my internet is down since yesterday"})
    with running_server(agent) as base:
        out = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="m", messages=history, max_tokens=10)  # type: ignore[arg-type]
    trimmed = out.model_extra["edge_agent"]["trimmed"]
    assert trimmed > 0
    sent = student.calls[0]
    assert sent[0]["role"] == "system" and "turn 0" not in " ".join(m["content"] for m in sent)
    assert len(sent) == 1 + len(history) - trimmed
