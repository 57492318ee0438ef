"""Turn plans: one interface, looked up by mode; prompt modules import one way; adapt's reused reply
honours max_tokens, reports usage and arrives in one piece."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import ConfigError
from edge_agent.library import Strategy
from edge_agent.pack import build_pack
from edge_agent.plans import AdaptPlan, GeneratePlan, GroundedPlan, plan_for
from tests.conftest import REPO
from tests.test_layering import import_graph



def test_plan_lookup_by_mode() -> None:
    assert isinstance(plan_for("grounded"), GroundedPlan)
    assert isinstance(plan_for("adapt"), AdaptPlan)
    compact = plan_for("compact")
    assert isinstance(compact, GeneratePlan) and compact.name == "compact" and compact.needs == {"student"}
    assert "facts" in plan_for("grounded").needs and "exemplars" in plan_for("adapt").needs
    with pytest.raises(ConfigError, match="unknown rendering mode 'nope'; valid modes: "):
        plan_for("nope")


def test_prompt_modules_import_in_one_direction() -> None:
    # no circle anywhere is tests/test_layering.py's check; here, the direction of the prompt modules
    graph = import_graph(REPO, ["edge_agent"])
    assert "edge_agent.rendering" not in graph["edge_agent.prompting"]
    assert "edge_agent.adapt" not in graph["edge_agent.rendering"]


def test_adapt_exemplar_is_one_piece_within_max_tokens(tmp_path: Path) -> None:
    long = ("I'm sorry about the outage and I understand how disruptive it is for you. " * 3).strip()
    strategies = [
        Strategy(id="a-1", scenario="CUSTOMER: my internet is down", strategy="Do: apologise.", exemplar=long)
    ]
    pack = build_pack(
        tmp_path / "p",
        strategies,
        HashEmbedder(dim=16),
        domain={"name": "t", "company": "T", "system_prompt": "You help."},
    ).path
    student = ScriptedChat(["unused"])
    agent = Agent.from_pack(
        pack,
        student=student,
        prompting={"mode": "adapt", "params": {"min_score": -1.0}},
        retrieval={"threshold": -1.0},
        generation={"max_tokens": 12},
    )
    stream = agent.stream([{"role": "user", "content": "my internet is down"}])
    pieces = list(stream)
    reply = stream.reply
    assert reply is not None and reply.route == "exemplar" and len(pieces) == 1
    assert reply.usage.completion_tokens <= 12 and reply.usage.completion_tokens > 0
    assert reply.finish_reason == "length" and reply.prompt == [] and student.calls == []
