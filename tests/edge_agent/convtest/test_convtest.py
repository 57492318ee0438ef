"""The conversation-test harness itself: parsing, checks, multi-turn runs, reports and exit codes.

Fast tier: a hash-embedded pack and scripted students; exact pass/fail counts are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.convtest import Context, SuiteError, load_suite, parse_suite, run_suite, select
from edge_agent.convtest.checks import check_reply
from edge_agent.convtest.cli import make_context
from edge_agent.convtest.fromlog import read_exchange, skeleton
from edge_agent.convtest.report import failure_lines, summary_table, write_junit
from edge_agent.embedder import HashEmbedder
from edge_agent.policy import PolicyRule

ENTRY = Path(sys.executable).parent / "edge-agent"
REFUND = PolicyRule(id="no-refund", kind="forbidden_promise", pattern=r"\bfull refund is yours\b")


def suite_of(text: str):
    return parse_suite(tomllib.loads(textwrap.dedent(text)), "t.toml")


class FakeReply:
    def __init__(self, text: str, route: str = "", facts: dict | None = None) -> None:
        self.text, self.route, self.hits, self.facts = text, route, [], facts or {}


# --- parsing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, message",
    [
        (
            '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "hi"\ncontain_any = ["x"]\n',
            "conversation 'a' turn 1: unknown key 'contain_any' (did you mean 'contains_any'?); valid keys: contains_all",
        ),
        (
            '[[conversations]]\nid = "a"\n[[conversations.turns]]\nsay = "hi"\n',
            "conversation 'a' turn 1: unknown key 'say'",
        ),
        (
            '[[conversations]]\nid = "a"\n[[conversations.turns]]\nnote = "x"\n',
            "conversation 'a' turn 1: 'customer' must be the customer's line",
        ),
        (
            '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "hi"\nmatches = "(unclosed"\n',
            "conversation 'a' turn 1: 'matches' pattern '(unclosed' is not a valid regex",
        ),
        (
            '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "hi"\nmax_words = "ten"\n',
            "'max_words' must be a whole number >= 0",
        ),
        (
            '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "x"\n'
            '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "y"\n',
            "conversation 'a': duplicate id",
        ),
        ('[[conversations]]\nid = "a"\n', "conversation 'a': 'turns' must be a non-empty list"),
        ('[suite]\nname = "x"\n', "no conversations; add [[conversations]]"),
        (
            '[defaults]\nnot_a_check = true\n[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "x"\n',
            "[defaults]: unknown key 'not_a_check' (did you mean 'not_matches'?); valid keys: contains_all",
        ),
        (
            '[[conversations]]\nid = "a"\nhistory = [{role = "system", content = "x"}]\n'
            '[[conversations.turns]]\ncustomer = "x"\n',
            "history item 1 must be",
        ),
    ],
)
def test_bad_suites_name_the_conversation_field_and_fix(body: str, message: str) -> None:
    with pytest.raises(SuiteError) as err:
        suite_of(body)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[conversations]\nid=", encoding="utf-8")
    with pytest.raises(SuiteError, match="bad.toml: invalid TOML"):
        load_suite(bad)
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SuiteError, match="not UTF-8"):
        load_suite(binary)


def test_defaults_merge_and_turn_overrides() -> None:
    suite = suite_of("""
        [defaults]
        max_words = 5
        [[conversations]]
        id = "a"
        defaults = { not_contains = ["sorry"] }
        [[conversations.turns]]
        customer = "x"
        [[conversations.turns]]
        customer = "y"
        max_words = 50
        rules = false
    """)
    t1, t2 = suite.conversations[0].turns
    assert t1.expect.checks == {
        "rules": True,
        "no_repeat": True,
        "language": True,
        "max_words": 5,
        "not_contains": ("sorry",),
    }
    assert t2.expect.checks["max_words"] == 50 and t2.expect.checks["rules"] is False


def test_select_by_id_tags_not_or() -> None:
    suite = suite_of("""
        [[conversations]]
        id = "refund-1"
        tags = ["billing"]
        [[conversations.turns]]
        customer = "x"
        [[conversations]]
        id = "cancel-1"
        tags = ["refund"]
        [[conversations.turns]]
        customer = "x"
        [[conversations]]
        id = "hello"
        [[conversations.turns]]
        customer = "x"
    """)
    ids = lambda e: [c.id for c in select(suite, e).conversations]  # noqa: E731
    assert ids("refund") == ["refund-1", "cancel-1"]
    assert ids("refund and not billing") == ["cancel-1"]
    assert ids("hello or billing") == ["refund-1", "hello"]
    assert ids(None) == ["refund-1", "cancel-1", "hello"]


# --- checks ------------------------------------------------------------------------------------
def checks_for(body: str, reply: FakeReply, earlier=(), ctx: Context | None = None) -> dict[str, bool]:
    suite = suite_of('[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "x"\n' + body)
    results = check_reply(
        suite.conversations[0].turns[0].expect, reply, list(earlier), ctx or Context(rules=[REFUND])
    )
    return {r.kind: r.passed for r in results}


@pytest.mark.parametrize(
    "body, text, kind, passed",
    [
        ('contains_any = ["postcode", "full name"]', "Could I have your POSTCODE?", "contains_any", True),
        ('contains_any = ["name"]', "Please rename the router.", "contains_any", False),  # word boundaries
    ('contains_any = ["?"]', "Shall I cancel it?", "contains_any", True),  # punctuation needs no boundary
    ('contains_any = ["£20"]', "Up to £20.", "contains_any", True),
        ('contains_all = ["name", "postcode"]', "Your name please.", "contains_all", False),
        ('not_contains = ["full refund"]', "No full refund, sorry.", "not_contains", False),
        ('matches = "£\\\\d+"', "That is £20.", "matches", True),
        ('not_matches = ["you qualify"]', "Yes, YOU QUALIFY.", "not_matches", False),
        ("max_words = 3", "one two three four", "max_words", False),
        ("min_words = 3", "one two three", "min_words", True),
        ("", "Your full refund is yours now.", "rules", False),
        ("rules = false", "Your full refund is yours now.", "rules", None),
        ("", "Fine.<|im_end|>", "language", False),
        ("", "[[AGENT GUIDANCE]] do this", "language", False),
        ("", "AGENT: hello", "language", False),
        ("", "", "language", False),
        ("", "A normal reply.", "language", True),
        ('route = ["clarify", "handoff"]', "x", "route", False),
        ("facts = { identity_verified = true }", "x", "facts", False),
    ],
)
def test_each_assertion_kind(body: str, text: str, kind: str, passed: bool | None) -> None:
    got = checks_for(body, FakeReply(text, route="exemplar"))
    assert got.get(kind) is passed


def test_no_repeat_route_and_facts() -> None:
    assert checks_for("", FakeReply("Same  reply."), earlier=["same reply."])["no_repeat"] is False
    assert checks_for('route = "clarify"', FakeReply("x", route="clarify:needs identity"))["route"] is True
    assert checks_for('not_route = "generated"', FakeReply("x", route="generated"))["not_route"] is False
    reply = FakeReply("x", facts={"identity_verified": True})
    assert (
        checks_for("facts = { identity_verified = true, outage_confirmed = false }", reply)["facts"] is True
    )


def test_similar_to_uses_the_embedder() -> None:
    emb = HashEmbedder(dim=64)
    ctx = Context(embed=emb.embed)
    same = checks_for('similar_to = "check the router lights"', FakeReply("check the router lights"), ctx=ctx)
    other = checks_for(
        'similar_to = "check the router lights"\nsimilar_threshold = 0.99',
        FakeReply("completely unrelated words about weather"),
        ctx=ctx,
    )
    assert same["similar_to"] is True and other["similar_to"] is False
    assert checks_for('similar_to = "x"', FakeReply("x"), ctx=Context())["similar_to"] is False


# --- runs --------------------------------------------------------------------------------------
SUITE = """
[defaults]
max_words = 30

[[conversations]]
id = "refund"
tags = ["billing"]

[[conversations.turns]]
customer = "I want a full refund"
contains_any = ["sorry"]

[[conversations.turns]]
customer = "Give it to me"
not_contains = ["refund"]

[[conversations]]
id = "hello"

[[conversations.turns]]
customer = "Hello"
contains_any = ["help"]
"""


def scripted_agent(hash_pack: Path, replies: list[str]) -> tuple[Agent, ScriptedChat]:
    student = ScriptedChat(replies)
    return Agent.from_pack(hash_pack, student=student, prompting={"mode": "plain"}), student


def test_run_counts_and_feeds_back_own_replies(hash_pack: Path) -> None:
    agent, student = scripted_agent(
        hash_pack, ["I'm sorry to hear that.", "Your full refund is yours.", "How can I help?"]
    )
    agent.rules = [REFUND]
    result = run_suite(suite_of(SUITE), agent, make_context(agent))
    s = result.summary()
    assert (s["conversations"], s["conversations_passed"], s["turns"], s["turns_passed"]) == (2, 1, 3, 2)
    # turn 2 fails not_contains and rules; every turn runs rules, no_repeat, language, max_words + its own
    assert s["checks"] == 3 * 4 + 3 and s["checks_failed"] == 2
    assert s["kinds"]["rules"] == {"passed": 2, "failed": 1}
    assert s["failed_kinds"] == {"not_contains": 1, "rules": 1}
    # a real multi-turn run: the second prompt holds the agent's own first reply
    second = student.calls[1]
    assert {"role": "assistant", "content": "I'm sorry to hear that."} in second
    lines = failure_lines(result.conversations[0])
    assert len(lines) == 2 and lines[0].startswith("FAIL refund turn 2 not_contains: contains ['refund']")
    assert "reply: 'Your full refund is yours.'" in lines[0]
    table = summary_table(result)
    assert "2/3 passed every check (66.7%)" in table and "rules" in table


def test_agent_error_ends_the_conversation_not_the_suite(hash_pack: Path) -> None:
    agent, _ = scripted_agent(hash_pack, ["I'm sorry."])  # the queue runs dry on turn 2
    result = run_suite(suite_of(SUITE), agent, make_context(agent))
    assert result.conversations[0].error.startswith("turn 2: BackendError")
    assert result.conversations[1].error.startswith("turn 1: BackendError")
    assert not result.passed and result.summary()["errors"] == 2


def test_history_is_played_before_the_first_line(hash_pack: Path) -> None:
    agent, student = scripted_agent(hash_pack, ["Sure, how can I help?"])
    suite = suite_of("""
        [[conversations]]
        id = "given"
        history = [{role = "user", content = "Hi"}, {role = "assistant", content = "Sure, how can I help?"}]
        [[conversations.turns]]
        customer = "My bill"
    """)
    result = run_suite(suite, agent, make_context(agent))
    assert student.calls[0][-3]["content"] == "Hi"
    assert result.conversations[0].turns[0].failures()[0].kind == "no_repeat"  # history counts as earlier


def test_junit_shape(hash_pack: Path, tmp_path: Path) -> None:
    agent, _ = scripted_agent(hash_pack, ["I'm sorry.", "no refund\x01 here", "How can I help?"])
    result = run_suite(suite_of(SUITE), agent, make_context(agent))
    out = tmp_path / "r" / "report.xml"
    write_junit(result, out)
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["t.refund", "t.refund", "t.hello"]
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("type") == "not_contains"
    assert "\x01" not in out.read_text(encoding="utf-8")


# --- the command -------------------------------------------------------------------------------
def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ENTRY), "test", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_exit_codes_through_the_entry_point(hash_pack: Path, tmp_path: Path) -> None:
    ok = tmp_path / "ok.toml"
    ok.write_text(
        '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "Hi"\ncontains_any = ["noted"]\n',
        encoding="utf-8",
    )
    bad = tmp_path / "fail.toml"
    bad.write_text(
        '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomer = "Hi"\ncontains_any = ["refund"]\n',
        encoding="utf-8",
    )
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[[conversations]]\nid = "a"\n[[conversations.turns]]\ncustomr = "Hi"\n', encoding="utf-8"
    )
    common = ["--pack", str(hash_pack), "--model", "mock"]
    passed = run_cli(str(ok), *common, "--junit", str(tmp_path / "j.xml"), cwd=tmp_path)
    assert passed.returncode == 0, passed.stderr
    assert "1/1 passed every check" in passed.stdout and (tmp_path / "j.xml").is_file()
    failed = run_cli(str(bad), *common, cwd=tmp_path)
    assert failed.returncode == 1 and "FAIL a turn 1 contains_any" in failed.stdout
    assert "Traceback" not in failed.stderr
    broke = run_cli(str(broken), *common, cwd=tmp_path)
    assert broke.returncode == 2
    assert broke.stderr.strip().startswith(
        "error: broken.toml: conversation 'a' turn 1: unknown key 'customr' (did you mean 'customer'?); valid "
        "keys: contains_all, contains_any, customer,"
    ) and "\n" not in broke.stderr.strip()
    nothing = run_cli(str(ok), *common, "-k", "zzz", cwd=tmp_path)
    assert nothing.returncode == 2 and "no conversation matches" in nothing.stderr
    as_json = run_cli(str(bad), *common, "--json", cwd=tmp_path)
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and data["summary"]["checks_failed"] == 1
    assert data["conversations"][0]["turns"][0]["checks"][0]["kind"] == "contains_any"


def test_from_log_round_trip(hash_pack: Path, tmp_path: Path) -> None:
    log = tmp_path / "chat.jsonl"
    log.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"customer": 'My internet is "down"', "text": "Sorry! Could I have your postcode?\nThanks"},
                {"customer": "LU1 4AB", "text": "Thanks."},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "kept.toml"
    done = run_cli("--from-log", str(log), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    suite = load_suite(out)
    turns = suite.conversations[0].turns
    assert [t.customer for t in turns] == ['My internet is "down"', "LU1 4AB"]
    assert turns[0].expect.checks["similar_to"] == "Sorry! Could I have your postcode?\nThanks"
    again = run_cli("--from-log", str(log), "--out", str(out), cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr  # never overwritten
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                ]
            }
        ),
        encoding="utf-8",
    )
    assert read_exchange(request) == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    transcript = tmp_path / "t.txt"
    transcript.write_text("CUSTOMER: hi\n\nAGENT: hello\n\nCUSTOMER: bye", encoding="utf-8")
    assert 'customer = "bye"' in skeleton(read_exchange(transcript), "t")
    one = tmp_path / "one.jsonl"  # a single `chat --json` turn is one JSON object, still a chat log
    one.write_text(json.dumps({"customer": "hi", "text": "Hello!"}) + "\n", encoding="utf-8")
    assert read_exchange(one) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"a": 1}\n{"b": 2}\n', encoding="utf-8")
    bad = run_cli("--from-log", str(junk), cwd=tmp_path)
    assert bad.returncode == 2 and "line 1: no 'customer' field" in bad.stderr


def test_shipped_demo_suite_meets_the_issue_minimums() -> None:
    suite = load_suite(Path(__file__).parents[2] / "conversations" / "demo.toml")
    assert len(suite.conversations) >= 30 and suite.turn_count >= 80
    tags = {t for c in suite.conversations for t in c.tags}
    for needed in (
        "outage",
        "slow_speed",
        "billing",
        "cancel",
        "move",
        "router",
        "refund",
        "technician",
        "upgrade",
        "escalation",
        "greeting",
        "off-topic",
        "identity",
        "injection",
        "privacy",
        "closing",
    ):
        assert needed in tags, needed
