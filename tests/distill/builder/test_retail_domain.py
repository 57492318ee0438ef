"""The third example domain (retail orders): long policy with a reviewed digest, rules, library, orders."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from distill.builder.scenarios import domain_situations
from distill.lifecycle.quality import text_problems
from edge_agent.domain import load_domain
from edge_agent.embedder import HashEmbedder
from edge_agent.library import read_library
from edge_agent.lint import blocking, lint_strategies
from edge_agent.pack import PackSettings, build_pack, load_pack

DOMAINS = Path(__file__).resolve().parents[3] / "distill" / "domains"
RETAIL = DOMAINS / "retail_orders.toml"
LIBRARY = DOMAINS / "retail_orders.library.jsonl"
ORDERS = DOMAINS / "retail_orders.orders.json"


def test_long_policy_for_the_teacher_short_reviewed_digest_for_the_device() -> None:
    dom = load_domain(RETAIL)
    assert len(dom.policy) > 4500 and dom.digest and len(dom.digest) < 1500
    assert dom.digest_info["status"] == "approved" and not dom.digest_info["stale"]
    assert len(dom.system_prompt()) < 0.35 * len(dom.system_prompt(full=True))
    for amount in ("$7.95", "15%", "$15", "30 days", "48 hours", "14 days"):  # the digest keeps the limits
        assert amount in dom.digest and amount in dom.policy, amount
    assert len(domain_situations(dom)) >= 8 and all(i.opening for i in dom.intents)


RULE_CASES = [
    ("no-refund-before-return-checked", "I'll issue your refund today.", True),
    ("no-refund-before-return-checked", "Your refund has been processed.", True),
    ("no-refund-before-return-checked", "Refunds are issued once the return has been checked.", False),
    ("no-final-sale-return", "I can accept the return of that clearance throw.", True),
    ("no-final-sale-return", "I can't accept a return of a final-sale item for a change of mind.", False),
    ("no-delivery-guarantee", "I promise it will arrive on Friday.", True),
    ("no-delivery-guarantee", "The carrier estimates Friday; that is an estimate.", False),
    ("no-early-replacement", "We'll send a replacement right away.", True),
    ("no-early-replacement", "Once the investigation closes we arrange a replacement.", False),
    ("no-price-match", "Sure, we'll match their price.", True),
    ("no-price-match", "We don't match other shops' prices.", False),
    ("goodwill-credit-cap", "I can add $25 store credit for the trouble.", True),
    ("goodwill-credit-cap", "I can add $10 store credit for the trouble.", False),
    ("no-other-persons-order", "Here is your husband's order address: 12 Elm St.", True),
    ("identify-customer", "Could you give me the email address you used for the order?", True),
    ("confirm-before-acting", "Shall I go ahead and cancel it?", True),
]


@pytest.mark.parametrize("rule_id, text, matches", RULE_CASES)
def test_rules_catch_promises_and_spare_correct_refusals(rule_id: str, text: str, matches: bool) -> None:
    rule = {r.id: r for r in load_domain(RETAIL).rules}[rule_id]
    assert rule.matches(text) is matches


def test_library_is_clean_and_covers_the_intents() -> None:
    dom = load_domain(RETAIL)
    lib = read_library(LIBRARY)
    assert len(lib) >= 15 and all(s.status == "approved" and s.exemplar and s.compact for s in lib)
    assert blocking(lint_strategies(lib, list(dom.rules))) == []
    intents = {i.id for i in dom.intents}
    # intents, plus what every desk needs covered so common lines never fall through (greetings, closing,
    # off-topic requests, escalation, someone else's order)
    coverage = {"greeting", "closing", "off_topic", "escalation", "privacy"}
    assert {t for s in lib for t in s.tags} <= intents | coverage and len({t for s in lib for t in s.tags} & intents) >= 9
    for s in lib:
        assert text_problems("compact", s.compact) == [] and text_problems("strategy", s.strategy) == []
        assert not any(r.matches(s.exemplar) for r in dom.rules if r.kind != "required_step"), s.id


def test_orders_are_well_formed_and_match_what_the_library_says() -> None:
    data = json.loads(ORDERS.read_text(encoding="utf-8"))
    orders = data["orders"]
    ids = [o["order_id"] for o in orders]
    assert len(ids) == len(set(ids)) >= 12
    for o in orders:
        assert o["status"] in data["statuses"] and re.fullmatch(r"\d{5}", o["zip"]) and "@" in o["email"]
        assert o["items"] and all(i["qty"] >= 1 and i["price"] > 0 for i in o["items"])
        for key in ("placed", "shipped", "delivered", "estimated_delivery", "cancelled"):
            if o.get(key):
                date.fromisoformat(o[key])
    assert set(data["statuses"]) == {o["status"] for o in orders}
    by_email = {o["email"]: o for o in orders}
    from edge_agent.lookups.orders import facts
    from edge_agent.planner import template_fields

    checked = 0
    for s in read_library(LIBRARY):
        # replies carry no literal order details: they are templates the order lookup fills in
        assert not re.search(r"\b(?:January|February|March|April|June|July|August|September|October|November|"
                             r"December) \d{1,2}\b", s.exemplar), s.id
        for email in re.findall(r"[\w.]+@example\.\w+", s.scenario):
            assert email in by_email  # every customer in the library has an order on file
            fields = template_fields(s.exemplar)
            if fields:  # and the lookup fills every field of that entry for that customer
                got = facts([{"role": "user", "content": email}], {}, ORDERS)
                assert all(got.get(f) not in (None, "") for f in fields), (s.id, fields, got)
                checked += 1
    assert checked >= 5

def test_the_library_packs_with_the_digest_recorded(tmp_path: Path) -> None:
    dom = load_domain(RETAIL)
    report = build_pack(tmp_path / "pack", read_library(LIBRARY), HashEmbedder(dim=32), embedder_dir=None,
                        domain=dom.to_manifest(), settings=PackSettings(retrieval=dom.settings["retrieval"]))
    block = load_pack(report.path).manifest["domain"]
    assert block["digest"]["text"] == dom.digest and block["policy"] == dom.policy.strip()
    assert dom.digest in block["system_prompt"] and "restocking fee; tell the customer" not in block["system_prompt"]


def test_pack_inspect_shows_the_digest(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge_agent.cli import cli

    dom = load_domain(RETAIL)
    report = build_pack(tmp_path / "pack", read_library(LIBRARY), HashEmbedder(dim=32), embedder_dir=None,
                        domain=dom.to_manifest(), settings=PackSettings())
    out = CliRunner().invoke(cli, ["pack", "inspect", str(report.path)])
    assert out.exit_code == 0, out.output
    assert (f"policy      digest of {len(dom.digest)} characters (approved, reviewed by edge-agent maintainers) for a "
            f"{len(dom.policy.strip())}-character policy") in out.output


def test_retail_suite_parses_and_names_only_customers_on_file() -> None:
    from edge_agent.convtest.suite import load_suite

    path = Path(__file__).parents[2] / "conversations" / "retail_orders.toml"
    suite = load_suite(path)
    assert len(suite.conversations) >= 12 and suite.turn_count >= 18
    emails = {o["email"] for o in json.loads(ORDERS.read_text(encoding="utf-8"))["orders"]}
    named = set(re.findall(r"[\w.]+@example\.\w+", path.read_text(encoding="utf-8")))
    assert named and named <= emails
    intents = {i.id for i in load_domain(RETAIL).intents}
    assert len(intents & {t for c in suite.conversations for t in c.tags}) >= 9
