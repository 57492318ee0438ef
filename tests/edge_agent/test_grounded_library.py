"""Library entries say what they assume: the distill writer's `requires` reach the library, lint flags
claims an entry's `requires` do not cover, and the shipped demo library passes that lint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from distill.builder.improve import improve, outcome_strategy
from distill.builder.student_runner import StudentRunner
from distill.config import LoopSettings
from distill.testing import EchoStudent, role_of
from edge_agent.domain import load_domain
from edge_agent.embedder import HashEmbedder
from edge_agent.library import Strategy, read_library
from edge_agent.lint import fact_flags
from tests.distill.builder.test_distill_loop import _caller, _scenario

DEMO = Path(__file__).resolve().parents[2] / "edge_agent" / "demo"
TEACHER_REPLY = (
    "Thanks for confirming your details. There is a confirmed outage in your area; engineers are on it."
)


def test_writer_requires_reach_the_library() -> None:
    def reply(messages: Sequence[Mapping[str, str]]) -> str:
        role = role_of(messages)
        if role == "judge":
            return json.dumps({"score": 5, "reason": "same"})
        return json.dumps(
            {
                "items": [{"do": "Say what the status page shows", "avoid": "guessing"}],
                "compact": "Say the outage is confirmed.",
                "requires": ["identity_verified", "made_up_fact", "Not A Name"],
            }
        )

    caller, fake = _caller(reply)
    domain = load_domain(DEMO / "domain.toml")
    student = StudentRunner(EchoStudent(), "You are an agent.", HashEmbedder())
    outcome = asyncio.run(
        improve(
            _scenario(),
            teacher_reply=TEACHER_REPLY,
            student_reply="BAD",
            domain=domain,
            caller=caller,
            student=student,
            settings=LoopSettings(),
        )
    )
    writer = next(c for c in fake.calls if role_of(c) == "writer")
    assert "outage_confirmed: Our network status page shows a confirmed outage" in writer[-1]["content"]
    entry = outcome_strategy(outcome, {"run_id": "t"})
    # the writer's declared fact, plus what the reply itself claims; unknown and malformed names dropped
    assert entry.requires == ("identity_verified", "outage_confirmed")
    assert entry.provenance["requires_from"] == "writer + the reply's own claims"
    assert Strategy.from_json(entry.to_json()).requires == entry.requires
    assert fact_flags([entry], domain.facts) == []


def test_lint_flags_claims_not_covered_by_requires() -> None:
    domain = load_domain(DEMO / "domain.toml")
    claims = Strategy(
        id="x-1",
        scenario="CUSTOMER: money back?",
        strategy="Do: confirm.",
        exemplar="Yes, you qualify: the outage is confirmed on our status page.",
    )
    conditional = Strategy(
        id="x-2",
        scenario="CUSTOMER: money back?",
        strategy="Do: explain.",
        exemplar="If there's a confirmed outage over 24 hours, you'll get a pro-rated credit.",
    )
    unknown = Strategy(
        id="x-3",
        scenario="CUSTOMER: hi",
        strategy="Do: greet.",
        exemplar="Hello!",
        requires=("outage_confirmd",),
    )
    flags = fact_flags([claims, conditional, unknown], domain.facts)
    got = {(f.strategy_id, f.rule, f.excerpt) for f in flags}
    assert got == {
        ("x-1", "uncovered-claim", "outage_confirmed"),
        ("x-1", "uncovered-claim", "outage_over_24h"),
        ("x-3", "unknown-fact", "outage_confirmd"),
    }
    assert all(f.blocks for f in flags)
    fixed = claims.replace(requires=("identity_verified", "outage_confirmed", "outage_over_24h"))
    assert fact_flags([fixed], domain.facts) == []


def test_the_demo_library_declares_what_it_assumes() -> None:
    domain = load_domain(DEMO / "domain.toml")
    library = read_library(DEMO / "library.jsonl")
    assert fact_flags(library, domain.facts) == []
    by_id = {s.id: s for s in library}
    assert set(by_id["demo-002"].requires) == {"identity_verified", "outage_confirmed", "outage_over_24h"}
    assert "within_minimum_term" in by_id["demo-014"].requires
    assert {"greeting", "closing", "off-topic", "complaint_escalation"} <= {
        t for s in library for t in s.tags
    }


def test_lint_flags_a_template_field_the_domain_does_not_declare() -> None:
    domain = load_domain(DEMO / "domain.toml")
    entry = Strategy(id="t-1", scenario="CUSTOMER: where is it?", strategy="Do: say.",
                     exemplar="Your {parcel_colour} parcel is on its way.", requires=("identity_verified",))
    flags = fact_flags([entry], domain.facts)
    assert [(f.rule, f.excerpt) for f in flags] == [("unknown-fact", "{parcel_colour}")]
