"""Real tier: the shipped demo pack in the grounded mode, with the real student and ONNX embedder.

The demo script's turns: an outage is checked through the fact source before any credit is
mentioned; exemplar and clarify replies never call the student, honour max_tokens and report usage.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import Agent
from edge_agent.facts import Facts
from edge_agent.gate import gate_reply
from edge_agent.pack.make import build_from_files

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "edge_agent" / "demo"
SCRIPT = [
    "Hi, my internet has been down since yesterday evening and I work from home.",
    "It's been over a day now. Am I getting money back for this?",
    "Priya Shah, LU1 4AB.",
    "Can you send a technician tomorrow? I'm not paying for it.",
]


@pytest.fixture(scope="module")
def grounded_pack(onnx_embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packs") / "demo"
    build_from_files(DEMO / "library.jsonl", DEMO / "domain.toml", out, onnx_embedder_dir)
    return out


@pytest.fixture(scope="module")
def agent(grounded_pack: Path) -> Agent:
    return Agent.from_pack(grounded_pack)


def test_demo_script_checks_the_outage_before_any_credit(agent: Agent) -> None:
    history: list[dict[str, str]] = []
    replies = []
    for line in SCRIPT:
        history.append({"role": "user", "content": line})
        reply = agent.reply(history)
        replies.append(reply)
        history.append({"role": "assistant", "content": reply.text})
    first, second, third, fourth = replies
    assert first.mode == "grounded" and first.route in ("exemplar", "clarify")
    assert "postcode" in first.text.lower() and "qualify" not in first.text.lower()
    # money asked for before anyone checked: no credit promised, no outage asserted, identity asked for
    assert "outage_confirmed" not in second.facts
    assert "postcode" in second.text.lower() and "you qualify" not in second.text.lower()
    assert "i'll add a credit" not in second.text.lower()
    # name and postcode given: the fact source confirms the outage, then the credit is explained
    assert third.facts["identity_verified"] is True and third.facts["outage_confirmed"] is True
    assert third.route == "exemplar" and "credit" in third.text.lower()
    assert (
        "outage_confirmed"
        in agent.pack.strategies[[s.id for s in agent.pack.strategies].index(third.strategy_id)].requires
    )
    assert fourth.route in ("exemplar", "clarify", "handoff") and fourth.text
    for r in replies:
        assert r.reason and r.prompt == [] and r.usage.prompt_tokens == 0  # the student was not asked
        assert 0 < r.usage.completion_tokens <= 256
        assert r.timings["generate_ms"] == 0.0
        assert not agent.rule_violations(r.text)


def test_exemplar_route_honours_max_tokens(grounded_pack: Path, agent: Agent) -> None:
    short = Agent.from_pack(grounded_pack, student=agent.student, generation={"max_tokens": 16})
    reply = short.reply([{"role": "user", "content": SCRIPT[0]}])
    assert reply.route == "exemplar"
    assert agent.student.count_tokens(reply.text) <= 16 and reply.usage.completion_tokens <= 16
    assert reply.finish_reason == "length"


def test_gate_refuses_off_domain_drafts_with_the_real_embedder(agent: Agent) -> None:
    g = agent.grounding()
    embed = agent.retriever.embedder.embed
    history = [{"role": "user", "content": "my internet is really slow"}]
    common = dict(
        context=agent.system_prompt,
        earlier=[],
        facts=Facts(),
        embed=embed,
        domain_vectors=g.domain_vectors,
        request_vecs=np.stack([embed([history[0]["content"]])[0]]),
    )
    assert gate_reply(
        "Your order is ready, so please pick up your order at the store counter.", **common
    ).startswith(("off-domain", "does not answer"))
    assert (
        gate_reply("I'm sorry it's slow. Could you run a speed test with a cable into the router?", **common)
        == ""
    )


THREE = "outage-verify-then-confirm or cancel-within-term or refund-full-month"


def _edge_test(pack: Path, *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """`edge-agent test` on three demo conversations, through the installed entry point."""
    entry = Path(sys.executable).parent / "edge-agent"
    suite = REPO / "tests" / "conversations" / "demo.toml"
    return subprocess.run([str(entry), "test", str(suite), "--pack", str(pack), "-k", THREE, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_three_demo_conversations_pass_through_the_command(grounded_pack: Path, tmp_path: Path) -> None:
    junit = tmp_path / "report.xml"
    done = _edge_test(grounded_pack, "--junit", str(junit), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3/3 passed" in done.stdout and junit.is_file()


def test_the_harness_with_a_generating_student(grounded_pack: Path, tmp_path: Path) -> None:
    """The same command with the student writing every reply (compact mode): the real model is called,
    the run completes, and failures are reported as failures (exit 1), not errors."""
    done = _edge_test(grounded_pack, "--mode", "compact", "--json", timeout=600)
    assert done.returncode in (0, 1), done.stderr
    import json

    data = json.loads(done.stdout)
    assert data["summary"]["conversations"] == 3 and data["summary"]["errors"] == 0
    assert all(t["reply"].strip() for c in data["conversations"] for t in c["turns"])
    assert done.returncode == (0 if data["summary"]["checks_failed"] == 0 else 1)
