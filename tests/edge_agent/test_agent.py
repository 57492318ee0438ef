"""The Agent with fakes: what reaches the student, what comes back, and history hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.backends import GenerationConfig, ScriptedChat
from edge_agent.errors import BackendError, ConfigError
from edge_agent.prompting import GUIDANCE_OPEN


def test_reply_uses_retrieved_strategy(hash_pack: Path) -> None:
    fake = ScriptedChat(["Sorry about the outage."])
    agent = Agent.from_pack(hash_pack, student=fake)
    reply = agent.reply([{"role": "user", "content": "my internet is down since yesterday"}])
    assert reply.text == "Sorry about the outage."
    assert reply.hits and reply.hits[0].strategy.id == "t-000"
    sent = fake.calls[0]
    assert sent[0] == {"role": "system", "content": "You help customers."}
    assert GUIDANCE_OPEN in sent[-1]["content"]
    assert "check the outage map" in sent[-1]["content"]
    assert set(reply.timings) >= {"embed_ms", "search_ms", "assemble_ms", "total_ms"}


def test_guidance_not_carried_into_next_turn(hash_pack: Path) -> None:
    fake = ScriptedChat(default="ok")
    agent = Agent.from_pack(hash_pack, student=fake)
    history = [{"role": "user", "content": "my internet is down since yesterday"}]
    first = agent.reply(history)
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "I want a refund"}]
    agent.reply(history)
    second_prompt = fake.calls[1]
    assert second_prompt[1]["content"] == "my internet is down since yesterday"
    assert sum(GUIDANCE_OPEN in m["content"] for m in second_prompt) == 1


def test_plain_mode_and_overrides(hash_pack: Path) -> None:
    fake = ScriptedChat(default="ok")
    agent = Agent.from_pack(hash_pack, student=fake, prompting={"mode": "plain"},
                            generation={"max_tokens": 7, "repeat_penalty": 1.2})
    reply = agent.reply([{"role": "user", "content": "my internet is down"}])
    assert reply.hits == [] and reply.mode == "plain"
    from edge_agent.agent import MARKER_STOPS

    assert fake.configs[0] == GenerationConfig(max_tokens=7, repeat_penalty=1.2, stop=MARKER_STOPS)


def test_streaming_yields_pieces_then_reply(hash_pack: Path) -> None:
    agent = Agent.from_pack(hash_pack, student=ScriptedChat(["one two three"]))
    stream = agent.stream([{"role": "user", "content": "router lights blinking orange"}])
    pieces = list(stream)
    assert "".join(pieces) == "one two three" and len(pieces) == 3
    assert stream.reply is not None and stream.reply.text == "one two three"


def test_bad_inputs(hash_pack: Path) -> None:
    agent = Agent.from_pack(hash_pack, student=ScriptedChat([]))
    with pytest.raises(ConfigError, match="empty"):
        agent.reply([])
    with pytest.raises(ConfigError, match="retrieval settings: unknown key"):
        Agent.from_pack(hash_pack, student=ScriptedChat([]), retrieval={"topk": 3})
    with pytest.raises(BackendError, match="queue is empty"):
        agent.reply([{"role": "user", "content": "hi"}])


def test_adapt_never_repeats_an_earlier_reply(tmp_path: Path) -> None:
    from edge_agent.embedder import HashEmbedder
    from edge_agent.library import Strategy
    from edge_agent.pack import PackSettings, build_pack

    item = Strategy(id="x", scenario="CUSTOMER: my internet is down", strategy="Apologise.",
                    exemplar="I am sorry your internet is down.")
    pack = build_pack(tmp_path / "p", [item], HashEmbedder(dim=32), domain={"system_prompt": "S"},
                      settings=PackSettings(prompting={"mode": "adapt", "params": {"min_score": 0.0}},
                                            retrieval={"threshold": 0.0})).path
    fake = ScriptedChat(default="generated")
    agent = Agent.from_pack(pack, student=fake)
    first = agent.reply([{"role": "user", "content": "my internet is down"}])
    assert first.text == "I am sorry your internet is down." and fake.calls == []
    second = agent.reply([{"role": "user", "content": "my internet is down"},
                          {"role": "assistant", "content": first.text},
                          {"role": "user", "content": "my internet is down"}])
    assert second.text == "generated" and second.route == "fallback:repeat"
