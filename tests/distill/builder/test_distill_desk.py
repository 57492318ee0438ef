"""A new user's own desk (issue 17): content checks, the teacher-keyed cache, smaller runs, messages."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from distill.builder.progress import Progress
from distill.builder.rundir import init_run, open_build
from distill.builder.scenarios import cap_customers, make_customers
from distill.cli import distill_group
from distill.config import ROLES, RunSettings, settings_from_domain
from distill.lifecycle.quality import problems, quality_summary, text_problems
from distill.testing import EchoStudent, LoopbackTeacher, fake_teacher_reply, role_of
from edge_agent.backends import ScriptedChat
from edge_agent.domain import load_domain
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import ConfigError
from edge_agent.library import Strategy, read_library

REPO = Path(__file__).resolve().parents[3]
DOMAINS = REPO / "distill" / "domains"
AIRLINE = DOMAINS / "airline.toml"
TEACHER = {"base_url": "http://127.0.0.1:9/v1", "model": "fake-teacher"}

from tests.distill.support import finish_build


def _entry(**kw: Any) -> Strategy:
    base = {"id": "d-1", "scenario": "CUSTOMER: I want my money back for the ticket I bought yesterday.",
            "strategy": "1. Do: acknowledge the frustration and explain the fare rules plainly.",
            "compact": "Acknowledge the frustration, explain the fare rules and offer the credit.",
            "exemplar": "I understand. This fare is not refundable, but I can offer a travel credit.",
            "source": "distilled", "status": "pending", "provenance": {"best_score": 4}}
    return Strategy.from_json({**base, **kw})


@pytest.mark.parametrize("text, kind", [
    ("", "empty"), ("...", "placeholder"), ("  …  ", "placeholder"), ("TODO", "placeholder"),
    ("N/A", "placeholder"), ("Say <insert the policy here>.", "placeholder"), ("Be nice.", "too short"),
    ("This is a JSON object that contains all of the information from the previous response.", "output"),
    ("Here is the list of items in the format you asked for, with do and avoid.", "output"),
])
def test_garbage_guidance_is_named(text: str, kind: str) -> None:
    found = text_problems("compact", text)
    assert found and kind in found[0], found


@pytest.mark.parametrize("text", [
    "Acknowledge the delay, check the order status and say when it ships.",
    "Do not promise a refund before the return arrives; explain the 14-day window.",
    "Ask for the order number or the email on the order, then look it up.",
    "Keep this answer short, with one apology and the next step.",
    "Give the response the policy allows: the list of options that apply to this order.",
])
def test_good_guidance_passes(text: str) -> None:
    assert text_problems("compact", text) == []


def test_entry_checks_score_exemplar_and_a_customer_who_plays_the_agent() -> None:
    assert problems(_entry(), min_score=2) == []
    assert problems(_entry(provenance={"best_score": 1}), min_score=2) == ["best score 1 is below the minimum 2"]
    assert problems(_entry(exemplar=""), min_score=2) == ["empty exemplar"]
    swapped = _entry(scenario="CUSTOMER: Hello, thank you for contacting us! How can I help you today?")
    assert any("customer speaks as the agent" in p for p in problems(swapped, min_score=2))


def test_summary_warns_when_most_score_at_the_bottom() -> None:
    low = [_entry(id=f"d-{i}", provenance={"best_score": 1, "rejected": ["best score 1 is below the minimum 2"]})
           for i in range(3)]
    q = quality_summary([_entry()], low, min_score=2)
    assert q["kept"] == 1 and q["rejected"] == 3 and q["reasons"] == {"score below minimum": 3}
    assert q["scores"]["1"] == 3 and "teacher strong enough" in q["warning"]
    assert quality_summary([_entry()], low[:1], min_score=2)["warning"] == ""


def _garbage(messages: Sequence[Mapping[str, str]]) -> str:
    """The issue's tiny run: the writer's compact is '...' or meta text, the judge gives 1."""
    role = role_of(messages)
    if role == "judge":
        return json.dumps({"score": 1, "reason": "far worse"})
    if role in ("writer", "merger"):
        meta = len(messages[-1]["content"]) % 2
        return json.dumps({"items": [{"do": "Acknowledge the concern", "avoid": ""}],
                           "compact": "This is a JSON object that contains all of the information from the "
                                      "previous response." if meta else "..."})
    return fake_teacher_reply(messages)


def _run(tmp: Path, name: str, fn: Callable[[Sequence[Mapping[str, str]]], str] = fake_teacher_reply,
         domain: Path = AIRLINE, **loop: Any) -> dict[str, Any]:
    run_dir = tmp / name
    if not (run_dir / "config.json").exists():
        init_run(run_dir, domain, teacher=TEACHER, loop={"personas": 1, "stages": (1.0,), "rounds": 1,
                                                          "generate_per_stage": 0, **loop},
                 student="echo", embedder="hash", cache=tmp / "cache.sqlite", run_id=name)
    fake = ScriptedChat(fn, name="fake")
    b = open_build(run_dir, backends=dict.fromkeys(ROLES, fake),
                   student=EchoStudent(), embedder=HashEmbedder())
    return finish_build(b)


def test_a_run_of_garbage_keeps_nothing_says_why_and_warns(tmp_path: Path) -> None:
    report = _run(tmp_path, "g", _garbage, max_customers=2)
    q = report["quality"]
    assert report["strategies"] == 0 and report["pack"] is None
    assert q["kept"] == 0 and q["rejected"] > 0 and "score below minimum" in q["reasons"]
    assert "teacher strong enough" in q["warning"]
    lib = read_library(tmp_path / "g" / "library" / "library.jsonl")
    assert lib and all(s.status == "rejected" and s.provenance["rejected"] for s in lib)
    out = CliRunner().invoke(distill_group, ["resume", str(tmp_path / "g"), "--no-progress"])
    assert "kept 0 strategies; rejected" in out.output and "teacher strong enough" in out.output


def test_intents_and_customer_cap_make_a_small_run(tmp_path: Path) -> None:
    store = DOMAINS / "outdoor_store.toml"
    with pytest.raises(ConfigError, match="unknown intent.*nope.* has: "):
        init_run(tmp_path / "bad", store, teacher=TEACHER, loop={"intents": ("nope",)})
    assert not (tmp_path / "bad").exists()
    ids = [i.id for i in load_domain(store).intents]
    report = _run(tmp_path, "small", domain=store, intents=(ids[1],), personas=4)
    assert report["stages"][0]["rollouts"] == 4
    capped = _run(tmp_path, "capped", domain=store, intents=tuple(ids[:2]), personas=4, max_customers=3)
    assert capped["stages"][0]["rollouts"] == 3
    journal = [json.loads(x) for x in (tmp_path / "capped" / "journal.jsonl").read_text().splitlines()]
    seen = {c["situation"]["id"] for r in journal if r["event"] == "customers" for c in r["customers"]}
    assert seen == set(ids[:2])


def test_customer_cap_spreads_over_situations_and_is_stable() -> None:
    domain = load_domain(DOMAINS / "outdoor_store.toml")
    situations = [{"id": i.id, "description": i.description} for i in domain.intents]
    everyone = make_customers(domain, situations, personas=2, seed=0)
    capped = cap_customers(everyone, len(situations), seed=0)
    assert len({c.situation["id"] for c in capped}) == len(situations)
    assert capped == cap_customers(everyone, len(situations), seed=0)
    assert len(situations) > 3 and len(everyone) == 2 * len(situations)
    assert [c.id for c in cap_customers(everyone, 3, seed=0)] == [c.id for c in capped[:3]]


def _loopback_run(tmp: Path, name: str, t: LoopbackTeacher, *extra: str) -> Any:
    return CliRunner().invoke(distill_group, [
        "run", "--domain", str(AIRLINE), "--out", str(tmp / name), "--teacher-url", t.base_url, "--teacher-model",
        "alias", "--student", "echo", "--embedder", "hash", "--cache", str(tmp / "cache.sqlite"), "--stages", "1.0",
        "--personas", "1", "--customers", "1", "--rounds", "1", "--json", *extra])


def _answered_by(report: Mapping[str, Any]) -> set[str]:
    """The runs that paid for this report's cached answers (its own run repeats some prompts)."""
    return {r for row in report["cache"]["by_teacher"] for r in row["cached_from_runs"]}


def test_the_cache_is_keyed_by_teacher_not_model_name(tmp_path: Path) -> None:
    gguf_a = [{"id": "alias", "owned_by": "llamacpp", "meta": {"n_params": 7, "size": 100}}]
    gguf_b = [{"id": "alias", "owned_by": "llamacpp", "meta": {"n_params": 3, "size": 60}}]
    with LoopbackTeacher(models=gguf_a) as t:
        first = _loopback_run(tmp_path, "a", t)
        assert first.exit_code == 0, first.output
        paid = t.paid
        same = _loopback_run(tmp_path, "a2", t)  # same teacher: everything from the cache
        assert same.exit_code == 0 and t.paid == paid
        again = json.loads(same.output)
        row = again["cache"]["by_teacher"][0]
        assert row["cache_hits"] > 0 and row["paid_calls"] == 0 and "fingerprint" in row["teacher"]
        assert row["cached_from_runs"] == [json.loads(first.output)["run_id"]]
        t.models = gguf_b  # another GGUF behind the same alias and URL
        swapped = _loopback_run(tmp_path, "b", t)
        assert swapped.exit_code == 0 and t.paid > paid
        assert _answered_by(json.loads(swapped.output)) <= {json.loads(swapped.output)["run_id"]}
        named = _loopback_run(tmp_path, "c", t, "--teacher-id", "gguf-b")  # an explicit id: a new key again
        assert named.exit_code == 0 and _answered_by(json.loads(named.output)) <= {json.loads(named.output)["run_id"]}
        assert "(id gguf-b)" in json.loads(named.output)["roles"]["teacher"]["teacher"]
    settings = RunSettings().with_overrides(teacher={**TEACHER, "teacher_id": "v2"})
    assert settings.endpoint("judge").identity("fp") == "http://127.0.0.1:9/v1|fake-teacher|v2"
    assert RunSettings().with_overrides(teacher=TEACHER).endpoint("teacher").identity("fp").endswith("|fp")


def test_a_dead_port_is_not_answered_from_another_endpoints_cache(tmp_path: Path) -> None:
    with LoopbackTeacher() as t:
        assert _loopback_run(tmp_path, "a", t).exit_code == 0
    out = CliRunner().invoke(distill_group, [
        "run", "--domain", str(AIRLINE), "--out", str(tmp_path / "dead"), "--teacher-url", "http://127.0.0.1:9/v1",
        "--teacher-model", "alias", "--student", "echo", "--embedder", "hash", "--cache",
        str(tmp_path / "cache.sqlite"), "--stages", "1.0", "--personas", "1", "--customers", "1", "--rounds", "1",
        "--timeout-s", "2", "--no-progress"])
    assert out.exit_code == 3 and "unreachable" in out.output
    with LoopbackTeacher() as t:  # the fix the message names: a new base_url on resume, saved in the run
        fixed = CliRunner().invoke(distill_group, ["resume", str(tmp_path / "dead"), "--teacher-url", t.base_url,
                                                   "--timeout-s", "30", "--no-progress"])
        assert fixed.exit_code == 0, fixed.output
        assert "teacher endpoint updated" in fixed.output and "finished" in fixed.output
    config = json.loads((tmp_path / "dead" / "config.json").read_text())
    assert config["settings"]["roles"]["teacher"]["base_url"] == t.base_url and config["endpoint_changes"]


def test_estimate_takes_the_model_from_the_domain_and_warns_over_its_budget(tmp_path: Path) -> None:
    desk = tmp_path / "desk.toml"
    desk.write_text(AIRLINE.read_text().replace("max_calls = 20000", "max_calls = 50")
                    + '\n[roles.teacher]\nmodel = "house-model"\n')
    out = CliRunner().invoke(distill_group, ["estimate", "--domain", str(desk), "--json"], env={
        "EDGE_AGENT_TEACHER_MODEL": None})
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["teacher_model"] == "house-model"
    assert any("exceeds the domain's [budget] max_calls = 50" in w for w in data["warnings"])
    small = json.loads(CliRunner().invoke(distill_group, [
        "estimate", "--domain", str(desk), "--json", "--intents", load_domain(AIRLINE).intents[0].id,
        "--customers", "1", "--stages", "1.0", "--rounds", "1"]).output)
    assert sum(r["calls"] for r in small["expected"]) < sum(r["calls"] for r in data["expected"])
    missing = CliRunner().invoke(distill_group, ["estimate", "--domain", str(AIRLINE)],
                                 env={"EDGE_AGENT_TEACHER_MODEL": None})
    assert missing.exit_code != 0 and "airline.toml's [roles.teacher]" in missing.output


def test_progress_lines_when_stderr_is_not_a_terminal() -> None:
    from types import SimpleNamespace

    from distill.roles.budget import Meter

    lines: list[str] = []
    now = [0.0]
    progress = Progress(enabled=False, lines=True, interval=10.0, clock=lambda: now[0], write=lines.append)
    progress.build = SimpleNamespace(caller=SimpleNamespace(meter=Meter()), student=SimpleNamespace(calls=0))
    progress("stage", {"stage": 0, "p": 1.0, "customers": 2, "library": 0})
    progress("rollout", {"stage": 0, "total": 2})  # within the interval: quiet
    now[0] = 11.0
    progress("rollout", {"stage": 0, "total": 2})
    progress("scenarios", {"stage": 0, "total": 1})
    progress("scenario", {"stage": 0, "status": "ok", "score": 3})
    assert len(lines) == 4 and lines[0].startswith("stage 0: rollouts 0/2")
    assert "rollouts 2/2" in lines[1] and lines[-1].startswith("stage 0: rollouts 2/2, scenarios 1/1")


def test_unknown_keys_name_the_files_table(tmp_path: Path) -> None:
    bad = tmp_path / "d.toml"
    bad.write_text(AIRLINE.read_text().replace("[distill]\n", "[distill]\npersonas_per_intent = 2\n"))
    with pytest.raises(ConfigError) as err:
        settings_from_domain(load_domain(bad).settings, bad.name)
    assert "d.toml [distill]: unknown key 'personas_per_intent'" in str(err.value)
    assert "loop" not in str(err.value) and "max_customers" in str(err.value)
    worse = tmp_path / "e.toml"
    worse.write_text(AIRLINE.read_text() + '\n[roles.judge]\ntemprature = 0\n')
    with pytest.raises(ConfigError, match=r"\[roles.judge\]: unknown key 'temprature' \(did you mean 'temperature'\?\)"):
        settings_from_domain(load_domain(worse).settings, worse.name)


def test_library_lint_flags_garbage_that_a_distill_run_would_reject(tmp_path: Path) -> None:
    from edge_agent.cli import cli
    from edge_agent.library import write_library

    lib = tmp_path / "lib.jsonl"
    write_library(lib, [_entry(id="d-ok"), _entry(id="d-dots", compact="..."),
                        _entry(id="d-meta", strategy="This is a JSON object that contains all of the information "
                                                     "from the previous response."),
                        _entry(id="d-hand", source="authored", compact="...")])  # hand-written: the author's call
    out = CliRunner().invoke(cli, ["library", "lint", str(lib), "--domain", str(AIRLINE), "--json"])
    flags = json.loads(out.stdout)["flags"]
    content = {(f["strategy_id"], f["message"].split(" (")[0]) for f in flags if f["kind"] == "content"}
    assert content == {("d-dots", "placeholder compact"),
                       ("d-meta", "strategy talks about the output, not the customer")}
    assert out.exit_code == 1
