"""The evaluation pipeline on fakes: cases, simulation, recording and replay, judges, report, budget."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from distill.config import BudgetSettings
from distill.evaluation.cases import CaseSelection, case_split, select_cases
from distill.evaluation.conditions import parse_condition
from distill.evaluation.judges import TurnJudge, score_offline
from distill.evaluation.records import Case, Conversation, Turn, read_recording, write_recording
from distill.evaluation.remote import RoleChat, make_endpoint
from distill.evaluation.report import render_html, text_table, write_report
from distill.evaluation.runner import EvalParts, EvalSettings, run_online, run_replay
from distill.evaluation.simulation import clean_customer_text
from distill.roles.budget import Meter
from distill.roles.cache import CallCache
from edge_agent.backends import ChatBackend, ScriptedChat
from edge_agent.cli import demo_dir
from edge_agent.domain import Domain, load_domain
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import ConfigError
from edge_agent.pack import load_pack

GOOD = "I'm sorry about that. Could I have your full name and postcode so I can check the account?"


@pytest.fixture
def domain() -> Domain:
    return load_domain(demo_dir() / "domain.toml")


def _students(model: str | None) -> tuple[ChatBackend, Mapping[str, Any]]:
    text = GOOD if model == "good" else "Calm down, that's not my problem."
    return ScriptedChat(default=text, name=str(model)), {}


def _customer(messages: Sequence[Mapping[str, str]]) -> str:
    n = sum(m["role"] == "assistant" for m in messages)
    return f"Customer: my internet is down (turn {n}, seed-free)" if n < 2 else "Thanks, bye [END]"


def _judge(messages: Sequence[Mapping[str, str]]) -> str:
    text = messages[-1]["content"]
    rated = text.split("Conversation to rate:")[-1].split("Reply B:")[-1]
    return json.dumps({"score": 5 if "full name" in rated else 1, "reason": "fake"})


def _parts(domain: Domain, **kw: Any) -> EvalParts:
    base: dict[str, Any] = {"domain": domain, "simulator": ScriptedChat(_customer, name="sim"),
                                "teacher": ScriptedChat(default=GOOD, name="teacher"),
                                "judge": ScriptedChat(_judge, name="judge"), "embedder": HashEmbedder(dim=64),
                                "load_student": _students}
    base.update(kw)
    return EvalParts(**base)


CONDS = (parse_condition("base", model="bad"), parse_condition("guided=guidelines", model="good"),
         parse_condition("teacher"))


@pytest.mark.parametrize("text,clean,ended", [
    ("Customer: hello there", "hello there", False),
    ("fine, thanks [END]", "fine, thanks", True),
    ("I want help.\nAgent: sure, what is it?", "I want help.", False),
    ('"quoted"', "quoted", False),
])
def test_clean_customer_text(text: str, clean: str, ended: bool) -> None:
    assert clean_customer_text(text) == (clean, ended)


def test_cases_are_seeded_and_respect_hold_out(domain: Domain) -> None:
    a = select_cases(domain, CaseSelection(personas=6, seed=3, trials=2))
    assert [c.key for c in a] == [c.key for c in select_cases(domain, CaseSelection(personas=6, seed=3, trials=2))]
    assert len(a) == 12 and len({c.id for c in a}) == 6
    test = select_cases(domain, CaseSelection(personas=32, split="test"))
    build = select_cases(domain, CaseSelection(personas=32, split="build"))
    assert not {c.id for c in test} & {c.id for c in build}
    assert all(case_split(c.persona, c.intent, 0.5) == "test" for c in test)
    held = a[0].persona_key
    rest = select_cases(domain, CaseSelection(personas=32, exclude_personas=(held,), exclude_intents=("outage",)))
    assert held not in {c.persona_key for c in rest} and "outage" not in {c.intent for c in rest}
    with pytest.raises(ConfigError, match="unknown intent"):
        select_cases(domain, CaseSelection(intents=("nope",)))


def test_online_run_record_and_replay_same_customer_turns(domain: Domain, tmp_path: Path) -> None:
    cases = select_cases(domain, CaseSelection(personas=3, seed=1))
    result = run_online(cases, _parts(domain), EvalSettings(conditions=CONDS, max_turns=4))
    assert len(result.references) == 3 and len(result.conversations) == 9
    assert all(len(c.turns) == 3 for c in result.conversations)  # the customer ended on turn 3
    rec = write_recording(tmp_path / "rec.jsonl", result.references, {"domain": domain.name})
    recording = read_recording(rec)
    replayed = run_replay(recording, _parts(domain, simulator=None, teacher=None, judge=None),
                          EvalSettings(conditions=CONDS[:2]))
    original = {c.case.key: [t.customer for t in c.turns] for c in result.references}
    for conv in replayed.conversations:
        assert [t.customer for t in conv.turns] == original[conv.case.key]
        assert all(t.reference == GOOD for t in conv.turns)
    summary = replayed.summary()
    assert summary["primary"] == "similarity"
    assert summary["differences"]["guided - base"]["similarity"]["excludes_zero"]
    assert summary["conditions"]["base"]["violations"]["mean"] == pytest.approx(6.0)  # 2 rules x 3 turns


def test_judges_and_checks_separate_good_from_bad(domain: Domain) -> None:
    cases = select_cases(domain, CaseSelection(personas=4, seed=2))
    summary = run_online(cases, _parts(domain), EvalSettings(conditions=CONDS, max_turns=2)).summary()
    rows = summary["conditions"]
    assert rows["base"]["judge"]["mean"] == 1 and rows["guided"]["judge"]["mean"] == 5
    assert rows["guided"]["closeness"]["mean"] == 5 and rows["guided"]["excellent"]["count"] == 4
    assert rows["base"]["missing_steps"]["mean"] == 1 and rows["guided"]["missing_steps"]["mean"] == 0
    assert rows["teacher"]["pass_k"]["1"] == 1.0 and rows["base"]["pass_k"]["1"] == 0.0
    assert "guided - base" in text_table(summary)


def test_turn_judge_repairs_then_gives_up() -> None:
    conv = Conversation(condition="x", case=Case(persona={}, intent="i"),
                        turns=[Turn(customer="a", reply="b", reference="c"), Turn(customer="d", reply="e", reference="f")])
    judge = ScriptedChat(["not json", '{"score": 4}', "nope", "still nope"])
    tj = TurnJudge(judge, retries=1)
    tj.judge_conversation(conv)
    assert [t.closeness for t in conv.turns] == [4, None] and tj.failures == 1
    assert "could not be used" in judge.calls[1][-1]["content"]


def test_score_offline_rules(domain: Domain) -> None:
    conv = Conversation(condition="x", case=Case(persona={}, intent="i"), turns=[
        Turn(customer="a", reply="Please calm down. We will waive the early termination fee.", reference="ok")])
    score_offline([conv], HashEmbedder(dim=16), domain.rules)
    assert sorted(conv.turns[0].violations) == ["no-calm-down", "no-etf-waiver"]
    assert conv.missing_steps == ["verify-account-holder"]
    assert conv.turns[0].similarity is not None


def test_pack_condition_runs_through_the_agent(domain: Domain, hash_pack: Path) -> None:
    pack = load_pack(hash_pack)
    conds = (parse_condition("base", model="good"), parse_condition("pack", model="good"),
             parse_condition("transfer", transfer_model="bad"))
    parts = _parts(domain, pack=pack, judge=None)
    result = run_online(select_cases(domain, CaseSelection(personas=2)), parts, EvalSettings(conditions=conds))
    fired = result.summary()["strategies"]
    assert sum(fired["pack"].values()) > 0 and fired["base"] == {}
    student = next(c for c in result.conversations if c.condition == "pack")
    assert student.turns[0].latency_ms > 0


def test_role_chat_caches_and_budget_stops(domain: Domain, tmp_path: Path) -> None:
    backend = ScriptedChat(default="hello", name="remote")
    ep = make_endpoint("customer", "http://127.0.0.1:9/v1", "m")
    meter = Meter(budget=BudgetSettings(max_calls=2))
    cache = CallCache(tmp_path / "calls.sqlite")
    role = RoleChat(ep, backend, meter=meter, cache=cache)
    msgs = [{"role": "user", "content": "hi"}]
    role.chat(msgs)
    role.chat(msgs)
    assert len(backend.calls) == 1 and role.ledger.count("customer") == (1, 1)
    parts = _parts(domain, simulator=role, teacher=None, judge=None)
    result = run_online(select_cases(domain, CaseSelection(personas=3)), parts,
                        EvalSettings(conditions=(parse_condition("base", model="good"),), max_turns=3))
    assert "call budget reached" in result.stopped
    assert len(result.conversations) < 3
    role.close()
    cache.close()


def test_report_html_and_cli_rerender(domain: Domain, tmp_path: Path) -> None:
    cases = select_cases(domain, CaseSelection(personas=3, seed=1))
    data = run_online(cases, _parts(domain), EvalSettings(conditions=CONDS, max_turns=2)).to_json()
    results, page = write_report(data, tmp_path / "out")
    html = page.read_text()
    for fig in ("plot-distribution", "plot-differences", "plot-personas", "plot-strategies", "plot-latency"):
        assert f"<figure id='{fig}'><svg" in html
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", html)  # self-contained: nothing fetched
    assert html == render_html(json.loads(results.read_text()))
    from distill.evaluation.cli import eval_group

    out = CliRunner().invoke(eval_group, ["report", str(tmp_path / "out"), "--baseline", "guided", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)["summary"]
    assert summary["baseline"] == "guided" and "base - guided" in summary["differences"]
