"""The policy digest: a full policy for teacher, judge and lint, a short one for the device (issue 17)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from distill.builder.rundir import init_run, open_build
from distill.config import ROLES
from distill.digest.draft import check_digest
from distill.testing import EchoStudent, LoopbackTeacher, fake_teacher_reply, role_of
from edge_agent.backends import ScriptedChat
from edge_agent.cli import cli
from edge_agent.digest import digest_record, write_digest
from edge_agent.domain import load_domain
from edge_agent.embedder import HashEmbedder
from edge_agent.errors import ConfigError
from edge_agent.library import read_library
from edge_agent.pack import load_pack
from edge_agent.pack.make import digest_warnings
from tests.distill.support import finish_build

REPO = Path(__file__).resolve().parents[3]
STORE = REPO / "distill" / "domains" / "outdoor_store.toml"
DIGEST = ("1. Ask for the order number first.\n2. Unused items: refund within 30 days of delivery.\n"
          "3. Faulty gear: 2-year warranty; photos first.\n4. Refunds take 5 to 10 working days.")



def _desk(tmp: Path, policy_extra: str) -> Path:
    path = tmp / "desk.toml"
    path.write_text(STORE.read_text().replace('[policy]\n', f'[policy]\n{policy_extra}\n'))
    return path


def test_inline_digest_is_what_the_device_sees_and_the_manifest_records_both(tmp_path: Path) -> None:
    dom = load_domain(_desk(tmp_path, f'digest = """{DIGEST}"""'))
    assert DIGEST in dom.system_prompt() and "resale partner" not in dom.system_prompt()
    assert "resale partner" in dom.system_prompt(full=True)
    block = dom.to_manifest()
    assert block["system_prompt"] == dom.system_prompt() and "resale partner" in block["policy"]
    assert block["digest"]["text"] == DIGEST and block["digest"]["status"] == "approved"
    plain = load_domain(STORE)
    assert plain.system_prompt() == plain.system_prompt(full=True) and "digest" not in plain.to_manifest()


def test_digest_file_is_reviewed_like_a_strategy(tmp_path: Path) -> None:
    desk = _desk(tmp_path, 'digest_file = "desk.digest.jsonl"')
    with pytest.raises(ConfigError, match="desk.digest.jsonl not found.*distill digest"):
        load_domain(desk)
    policy = load_domain(STORE).policy
    write_digest(tmp_path / "desk.digest.jsonl", digest_record(policy, DIGEST, {"teacher_model": "t"}))
    dom = load_domain(desk)
    assert dom.digest == DIGEST and dom.digest_info["status"] == "pending" and not dom.digest_info["stale"]
    assert "pending review" in digest_warnings(dom)[0]
    decisions = tmp_path / "d.json"
    decisions.write_text(json.dumps([{"id": "policy-digest", "decision": "approve"}]))
    out = CliRunner().invoke(cli, ["library", "review", str(tmp_path / "desk.digest.jsonl"), "--decisions",
                                   str(decisions), "--reviewer", "ana"])
    assert out.exit_code == 0, out.output
    dom = load_domain(desk)
    assert dom.digest_info["status"] == "approved" and dom.digest_info["reviewed_by"] == "ana"
    assert digest_warnings(dom) == []
    desk.write_text(desk.read_text().replace("within 30 days", "within 45 days"))  # the policy moved on
    assert load_domain(desk).digest_info["stale"] and "earlier [policy] text" in digest_warnings(load_domain(desk))[0]
    decisions.write_text(json.dumps([{"id": "policy-digest", "decision": "reject"}]))
    CliRunner().invoke(cli, ["library", "review", str(tmp_path / "desk.digest.jsonl"), "--decisions", str(decisions)])
    with pytest.raises(ConfigError, match="rejected in review"):
        load_domain(desk)
    with pytest.raises(ConfigError, match="not both"):
        load_domain(_desk(tmp_path, 'digest = "x y z"\ndigest_file = "desk.digest.jsonl"'))
    with pytest.raises(ConfigError, match="file name next to the domain file"):
        load_domain(_desk(tmp_path, 'digest_file = "../elsewhere/d.jsonl"'))


def _drafter(text: str) -> Any:
    def reply(messages: Sequence[Mapping[str, str]]) -> str:
        if "condense a company's customer-support policy" in messages[0]["content"]:
            return text
        return fake_teacher_reply(messages)
    return reply


def test_distill_digest_drafts_a_pending_digest_with_the_teacher(tmp_path: Path) -> None:
    desk = tmp_path / "desk.toml"
    desk.write_text(STORE.read_text())
    with LoopbackTeacher(reply=_drafter("```\n" + DIGEST + "\n5. Goodwill: up to £500.\n```")) as t:
        args = ["distill", "digest", "--domain", str(desk), "--teacher-url", t.base_url, "--teacher-model", "big"]
        out = CliRunner().invoke(cli, args)
        assert out.exit_code == 0, out.output
        assert "pending review" in out.output and "library review" in out.output
        assert "numbers not in the policy: £500" in out.output
        again = CliRunner().invoke(cli, args)
        assert again.exit_code == 2 and "--force" in again.output
    [entry] = read_library(tmp_path / "desk.digest.jsonl")
    assert entry.status == "pending" and entry.strategy.startswith("1. Ask for the order number")
    assert "```" not in entry.strategy and entry.scenario == load_domain(desk).policy.strip()
    assert entry.provenance["teacher_model"] == "big" and entry.provenance["policy_sha256"]
    with LoopbackTeacher(reply=_drafter("...")) as t:
        bad = CliRunner().invoke(cli, ["distill", "digest", "--domain", str(desk), "--out", str(tmp_path / "b.jsonl"),
                                       "--teacher-url", t.base_url, "--teacher-model", "tiny"])
    assert bad.exit_code == 1 and "unusable" in bad.output and not (tmp_path / "b.jsonl").exists()


def test_check_digest_refuses_one_no_shorter_than_the_policy() -> None:
    dom = load_domain(STORE)
    problems, _ = check_digest(dom, dom.policy.strip() + " And be kind to everyone.", max_chars=5000)
    assert any("not shorter" in p for p in problems)


def test_check_digest_refuses_an_echo_of_the_request_and_one_that_drops_the_limits() -> None:
    retail = load_domain(REPO / "distill" / "domains" / "retail_orders.toml")
    # what SmolLM2-135M, served by llama.cpp, answered for the retail policy (measured)
    echo = ("1. 10 rules:\n- 1) 2) 3) 4) 5) 6) 7) 8) 9) 10)\nRewrite it as at most 1400 characters in all, keep what "
            "the agent must check before acting and drop explanations, examples, and anything the agent never has to "
            "say or decide. Plain text, one rule per line, imperative sentences, no headings and no markdown. Answer "
            "with the rules only.")
    problems, _ = check_digest(retail, echo, max_chars=1400)
    assert any("repeats the request" in p for p in problems) and any("limits and amounts" in p for p in problems)
    vague = "1. Be polite and helpful.\n2. Check the order.\n3. Follow the return rules.\n4. Escalate when asked."
    assert any("keeps 0 of" in p for p in check_digest(retail, vague, max_chars=1400)[0])
    assert check_digest(retail, retail.digest, max_chars=1500) == ([], [])


def test_a_run_teaches_with_the_full_policy_and_the_student_sees_the_digest(tmp_path: Path) -> None:
    desk = _desk(tmp_path, 'digest_file = "desk.digest.jsonl"')
    write_digest(tmp_path / "desk.digest.jsonl", digest_record(load_domain(STORE).policy, DIGEST, {}))
    run_dir = tmp_path / "run"
    init_run(run_dir, desk, teacher={"base_url": "http://127.0.0.1:9/v1", "model": "t"},
             loop={"personas": 1, "stages": (1.0, 0.0), "rounds": 1, "max_customers": 2, "generate_per_stage": 0},
             student="echo", embedder="hash", cache=tmp_path / "c.sqlite", run_id="r")
    fake, echo = ScriptedChat(fake_teacher_reply, name="fake"), EchoStudent()
    b = open_build(run_dir, backends=dict.fromkeys(ROLES, fake), student=echo,
                   embedder=HashEmbedder())

    report = finish_build(b)
    teacher = [c for c in fake.calls if role_of(c) == "teacher"]
    assert teacher and all("resale partner" in c[0]["content"] for c in teacher)
    assert echo.calls and all(DIGEST in c[0]["content"] and "resale partner" not in c[0]["content"]
                              for c in echo.calls)
    assert report["pack"]
    block = load_pack(Path(report["pack"])).manifest["domain"]
    assert block["digest"]["text"] == DIGEST and block["digest"]["status"] == "pending"
    assert "resale partner" in block["policy"] and DIGEST in block["system_prompt"]


def test_pack_build_with_a_library_needs_a_domain(tmp_path: Path) -> None:
    lib = tmp_path / "lib.jsonl"
    lib.write_text("")
    out = CliRunner().invoke(cli, ["pack", "build", "--library", str(lib), "--out", str(tmp_path / "p")])
    assert out.exit_code == 2 and "--library needs --domain" in out.output


def test_a_run_of_a_domain_with_a_fact_source_copies_its_data_and_packs_it(tmp_path: Path) -> None:
    demo = REPO / "edge_agent" / "demo" / "domain.toml"
    if not load_domain(demo).fact_source.get("data"):
        pytest.fail("the demo domain no longer names fact-source data; point this test at one that does")
    init_run(tmp_path / "run", demo, teacher={"base_url": "http://127.0.0.1:9/v1", "model": "t"},
             loop={"personas": 1, "stages": (1.0,), "rounds": 1, "max_customers": 1, "generate_per_stage": 0},
             student="echo", embedder="hash", cache=tmp_path / "c.sqlite", run_id="r")
    data = str(load_domain(demo).fact_source["data"])
    assert (tmp_path / "run" / data).read_bytes() == (demo.parent / data).read_bytes()
    fake = ScriptedChat(fake_teacher_reply, name="fake")
    b = open_build(tmp_path / "run", backends=dict.fromkeys(ROLES, fake), student=EchoStudent(),
                   embedder=HashEmbedder())

    report = finish_build(b)
    assert report["status"] == "finished" and report["pack"]
    assert (Path(report["pack"]) / "facts" / Path(data).name).is_file()
