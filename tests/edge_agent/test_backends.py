"""The backend seam: what a stream returns, the registry of backends, and the local-model extras."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from edge_agent.agent import Agent, student_for
from edge_agent.backends import (
    LLAMA_CPP,
    ChatBackend,
    ChatResult,
    ChatStream,
    LocalModel,
    Message,
    ScriptedChat,
    Usage,
    backend_names,
    make_backend,
    register_backend,
)
from edge_agent.errors import ConfigError, ModelError

HI = [{"role": "user", "content": "my internet is down"}]


def test_a_scripted_stream_ends_with_the_calls_result() -> None:
    fake = ScriptedChat(["Sorry to hear that, let me check."])
    stream = fake.stream(HI)
    assert isinstance(stream, ChatStream) and stream.result is None and fake.calls == []  # nothing ran yet
    assert "".join(stream) == "Sorry to hear that, let me check."
    assert stream.result == ChatResult("Sorry to hear that, let me check.", Usage(4, 7), model="scripted")
    assert fake.calls == [HI]


def test_a_stream_closed_early_has_no_result() -> None:
    stream = ScriptedChat(["one two three"]).stream(HI)
    assert next(stream) == "one"
    stream.close()
    assert list(stream) == [] and stream.result is None


def test_chat_stream_of_a_finished_call() -> None:
    result = ChatResult("", Usage(2, 0), finish_reason="length")
    stream = ChatStream.of(result)
    assert list(stream) == [] and stream.result is result


def test_the_registry_makes_mock_and_scripted() -> None:
    assert {"mock", "scripted", LLAMA_CPP} <= set(backend_names())
    mock = make_backend("mock")
    assert isinstance(mock, ChatBackend) and mock.name == "mock"
    assert mock.chat(HI).text.startswith("Thanks for reaching out")
    scripted = make_backend("scripted", replies=["ok"])
    assert isinstance(scripted, ScriptedChat) and scripted.chat(HI).text == "ok"
    assert not isinstance(mock, LocalModel)  # no window or tokenizer of its own


def test_an_unknown_backend_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        make_backend("gpt-17")
    message = str(err.value)
    assert "'gpt-17'" in message and "mock" in message and "scripted" in message and LLAMA_CPP in message
    assert "\n" not in message


def test_a_registered_fake_is_picked_by_name_like_a_real_one(hash_pack: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_agent.backends

    monkeypatch.setattr(edge_agent.backends, "_REGISTRY", dict(edge_agent.backends._REGISTRY))  # undone after
    register_backend("echo-test", lambda: ScriptedChat(lambda m: str(m[-1]["content"]), name="echo-test"))
    student, defaults = student_for("echo-test")
    assert student.name == "echo-test" and defaults == {}
    agent = Agent.from_pack(hash_pack, "echo-test")
    assert agent.student.name == "echo-test"
    assert Agent.from_pack(hash_pack, "mock").student.name == "mock"


def test_an_unknown_model_names_the_backends_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="mock, scripted, or pass a path"):
        student_for("no-such-model")


class Words(ScriptedChat):
    n_ctx = 64

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def tokenize_messages(self, messages: Sequence[Message]) -> tuple[list[int], list[str]]:
        return [0] * sum(len(str(m["content"]).split()) for m in messages), []


def test_the_agent_counts_in_a_local_models_tokens() -> None:
    assert isinstance(Words(), LocalModel)
    assert Agent(Words()).token_count("one two three four five") == 5
    assert Agent(ScriptedChat()).token_count("one two three four five") != 5  # estimated from the length
