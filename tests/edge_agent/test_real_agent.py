"""Real tier: the real SmolLM2 GGUF and the real ONNX embedder answer offline with strategies."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.backends import GenerationConfig
from edge_agent.embedder import OnnxEmbedder
from edge_agent.library import read_library
from edge_agent.pack import PackSettings, build_pack, load_pack
from edge_agent.prompting import GUIDANCE_OPEN
from edge_agent.rendering import PromptConfig

pytestmark = pytest.mark.real

DEMO = Path(__file__).resolve().parents[2] / "edge_agent" / "demo"


@pytest.fixture(scope="module")
def demo_pack(onnx_embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge_agent.domain import load_domain

    dom = load_domain(DEMO / "domain.toml")
    out = tmp_path_factory.mktemp("packs") / "demo"
    build_pack(out, read_library(DEMO / "library.jsonl"), OnnxEmbedder(onnx_embedder_dir),
               embedder_dir=onnx_embedder_dir, domain=dom.to_manifest(),
               settings=PackSettings(retrieval=dom.settings.get("retrieval", {}),
                                     prompting=dom.settings.get("prompting", {}),
                                     generation=dom.settings.get("generation", {})))
    return out


@pytest.fixture(scope="module")
def agent(demo_pack: Path) -> Agent:
    # these tests are about the student's own turns (KV reuse, guidance in its prompt): pin a mode in
    # which it writes every reply; the grounded default is tested in test_grounded_real.py
    return Agent.from_pack(demo_pack, generation={"max_tokens": 48}, prompting={"mode": "compact"})


def test_offline_turn_with_strategies(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):  # any socket at all during a chat turn is a bug
        raise AssertionError("chat tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    history = [{"role": "user", "content": "My internet has been dead since last night and I work from home."}]
    reply = agent.reply(history)
    assert reply.text.strip()
    assert reply.hits, "a clearly relevant strategy should be retrieved"
    assert reply.hits[0].strategy.tags and "outage" in reply.hits[0].strategy.tags
    assert GUIDANCE_OPEN in reply.prompt[-1]["content"] or reply.mode != "compact"
    if reply.route != "exemplar":  # adapt mode may answer with the fitted exemplar, without the student
        assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.completion_tokens <= 48


def test_kv_prefix_is_reused_across_turns(agent: Agent) -> None:
    agent.student.reset()
    history = [{"role": "user", "content": "Hello, my bill is higher than usual this month."}]
    compact = PromptConfig(mode="compact")  # a mode that always runs the student
    first = agent.reply(history, prompting=compact)
    assert first.usage.evaluated_prompt_tokens == first.usage.prompt_tokens
    history += [{"role": "assistant", "content": first.text},
                {"role": "user", "content": "It says there is a late payment fee. I paid on time."}]
    second = agent.reply(history, prompting=compact)
    system_tokens = agent.student.count_tokens(agent.system_prompt)
    assert second.usage.evaluated_prompt_tokens < second.usage.prompt_tokens - system_tokens


def test_streaming_matches_reply(agent: Agent) -> None:
    history = [{"role": "user", "content": "Can I take my internet with me when I move house?"}]
    stream = agent.stream(history, generation=agent.generation.merged(max_tokens=24))
    text = "".join(stream)
    assert stream.reply is not None and stream.reply.text == text.strip()
    again = agent.reply(history, generation=agent.generation.merged(max_tokens=24))
    assert again.text == stream.reply.text  # temperature 0 is deterministic


def test_generation_config_reaches_llama(agent: Agent) -> None:
    reply = agent.reply([{"role": "user", "content": "Hi"}], generation=GenerationConfig(max_tokens=3))
    assert reply.usage.completion_tokens <= 3


def test_query_embedding_matches_pack_vectors(demo_pack: Path) -> None:
    """A pack row's vector equals the device query embedding of the same text (one embedder)."""
    from edge_agent.pack import index_text

    pack = load_pack(demo_pack)
    emb = pack.open_embedder()
    qt = pack.settings.retrieval.query_turns
    for row in (0, 7, 21):
        vec = emb.embed([index_text(pack.strategies[row], qt)])[0]
        assert float(vec @ pack.vectors[row]) > 0.9999


def test_prefix_kv_cache_on_disk(demo_pack: Path, tmp_path: Path) -> None:
    """A second cold start loads the system prompt's KV state instead of prefilling it, and replies
    exactly as a start without the cache does."""
    history = [{"role": "user", "content": "Hello, I would like to upgrade my plan."}]
    cfg = {"max_tokens": 16}
    first = Agent.from_pack(demo_pack, prompting={"mode": "compact"}, generation=cfg)
    first.student.load()  # the weights, and the prefix warmed from them, load at the first generation
    kv_files = list(Path(os.environ["EDGE_AGENT_HOME"]).glob("kvcache/*.kv"))
    assert len(kv_files) == 1
    del first
    cached = Agent.from_pack(demo_pack, prompting={"mode": "compact"}, generation=cfg)
    plain = Agent.from_pack(demo_pack, prompting={"mode": "compact"}, generation=cfg, warm_prefix=False)
    a, b = cached.reply(history), plain.reply(history)
    assert a.text == b.text
    prefix = len(cached.student.prefix_tokens(cached.system_prompt))
    assert a.usage.evaluated_prompt_tokens == b.usage.evaluated_prompt_tokens - prefix
