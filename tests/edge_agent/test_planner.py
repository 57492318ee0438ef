"""The turn planner, facts and the reply gate: pure, table-driven, every reason string checked."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.errors import ConfigError
from edge_agent.facts import Condition, Facts, FactSpec, FactTracker, claimed_facts, parse_condition
from edge_agent.gate import gate_reply
from edge_agent.library import Strategy
from edge_agent.planner import DEFAULT_REPLIES, Planner, PlannerParams
from edge_agent.policy import PolicyRule
from edge_agent.retrieval import Hit

DIM = 8
ID = FactSpec(
    id="identity_verified",
    ask="Could I have the account holder's full name and postcode?",
    source=True,
    asked_by=("full name", "postcode"),
    claims=(r"you're verified",),
)
OUTAGE = FactSpec(
    id="outage_confirmed",
    ask="Could I have your postcode to check the status page?",
    source=True,
    claims=(r"confirmed outage",),
    claims_not=(r"\bno outage\b",),
)
TERM = FactSpec(id="within_minimum_term", source=True)
FIXED = FactSpec(
    id="line_fixed", customer=(r"\bworking again\b",), customer_not=(r"\buntil it'?s working\b",)
)
SPECS = [ID, OUTAGE, TERM, FIXED]
RULE = PolicyRule(id="no-full-refund", kind="forbidden_promise", pattern=r"\bfull refund is yours\b")


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def entry(sid: str, exemplar: str, requires: tuple[str, ...] = ()) -> Strategy:
    return Strategy(
        id=sid,
        scenario=f"CUSTOMER: scenario {sid}",
        strategy="Do: help.",
        exemplar=exemplar,
        requires=requires,
    )


def planner(entries: list[Strategy], params: PlannerParams = PlannerParams(), **kw) -> Planner:
    # entry i's customer line and reply both point along axis i: a request along axis i answers it
    turn = np.stack([np.stack([unit(i), unit(i)]) for i in range(len(entries))])
    return Planner(
        entries, turn, system_prompt="Policy: be kind.", rules=[RULE], specs=SPECS, params=params, **kw
    )


def plan_for(entries, facts: dict, *, request: int = 0, history=None, scores=None, **kw):
    p = planner(entries, **kw)
    hits = [Hit(s, (scores or {}).get(s.id, 0.8), i) for i, s in enumerate(entries)]
    f = Facts(dict(facts), {k: "fact source" for k in facts})
    history = history or [{"role": "user", "content": "my internet is down"}]
    return p.plan(history, hits, unit(request)[None, :], f)


CREDIT = "You're verified, and there is a confirmed outage, so a credit for the lost days will be added."
ASK = "Could you give me your full name and postcode so I can check the status page?"


@pytest.mark.parametrize(
    "entries, facts, route, reason, text",
    [
        (
            [entry("e1", CREDIT, ("identity_verified", "outage_confirmed"))],
            {"identity_verified": True, "outage_confirmed": True},
            "exemplar",
            "e1 answers the latest message (relevance 1.00); its facts hold (identity_verified, outage_confirmed)",
            CREDIT,
        ),
        (
            [entry("e1", CREDIT, ("identity_verified", "outage_confirmed"))],
            {},
            "clarify",
            "e1 needs identity_verified: not established -> clarify",
            ID.ask,
        ),
        (
            [entry("e1", CREDIT, ("identity_verified", "outage_confirmed"))],
            {"identity_verified": True},
            "clarify",
            "e1 needs outage_confirmed: not established -> clarify",
            OUTAGE.ask,
        ),
        (
            [entry("e1", "There's no fee to cancel.", ("!within_minimum_term",))],
            {"within_minimum_term": True},
            "clarify",
            "no library reply fits -> ask for more detail",
            DEFAULT_REPLIES["clarify"],
        ),
        (
            [entry("e1", "The outage is over, good news.", ())],
            {},
            "exemplar",
            "e1 answers the latest message (relevance 1.00)",
            "The outage is over, good news.",
        ),
    ],
)
def test_route_table(entries, facts, route, reason, text) -> None:
    plan = plan_for(entries, facts)
    assert (plan.route, plan.reason, plan.text) == (route, reason, text)


@pytest.mark.parametrize(
    "exemplar, requires, facts, verdict",
    [
        (
            "Sorry, the line is down.",
            ("!within_minimum_term",),
            {"within_minimum_term": True},
            "needs !within_minimum_term, but it does not hold",
        ),
        ("There is a confirmed outage in your area.", (), {}, "claims outage_confirmed: not established"),
        (
            "The status page shows no outage.",
            (),
            {"outage_confirmed": True},
            "claims !outage_confirmed: not established",
        ),
        (ASK, (), {"identity_verified": True}, "asks for identity_verified, already established"),
        (
            "Your full refund is yours today.",
            (),
            {},
            "fit check: 1 of 1 sentences carry facts not in the conversation",
        ),
        (
            "Mr Jenkins, your engineer Bob comes on 12 March at 9am.",
            (),
            {},
            "fit check: 1 of 1 sentences carry facts not in the conversation",
        ),
    ],
)
def test_each_rejection_reason(exemplar, requires, facts, verdict) -> None:
    plan = plan_for([entry("e1", exemplar, requires)], facts)
    assert plan.candidates[0].verdict == verdict
    assert plan.route in ("clarify", "handoff") and plan.strategy_id == ""


def test_rule_checked_by_meaning_rejects_a_reworded_promise() -> None:
    by_meaning = lambda text: ["no-full-refund"] if "every penny" in text else []  # noqa: E731
    plan = plan_for(
        [entry("e1", "You'll get every penny back for the whole month.")], {}, rule_check=by_meaning
    )
    assert plan.candidates[0].verdict == "breaks rule no-full-refund" and plan.route == "clarify"


def test_relevance_and_score_gates_and_order() -> None:
    entries = [entry("far", "A reply about something else."), entry("near", "A reply that fits.")]
    plan = plan_for(entries, {}, request=1, scores={"far": 0.9, "near": 0.6})
    assert plan.route == "exemplar" and plan.strategy_id == "near"
    assert [c.id for c in plan.candidates] == ["near"]  # best combined first; stops at the chosen one
    low = plan_for([entry("e1", "Fits.")], {}, request=1)  # request along another axis
    assert low.candidates[0].verdict == "does not answer the latest message (relevance 0.00 < 0.5)"
    weak = plan_for([entry("e1", "Fits.")], {}, scores={"e1": 0.2})
    assert weak.candidates[0].verdict == "score 0.20 < 0.35"


def test_repeat_ask_then_handoff() -> None:
    entries = [entry("e1", CREDIT, ("identity_verified", "outage_confirmed"))]
    asked = [
        {"role": "user", "content": "money back?"},
        {"role": "assistant", "content": ID.ask},
        {"role": "user", "content": "money back please"},
    ]
    again = plan_for(entries, {}, history=asked)
    assert (again.route, again.text) == ("clarify", DEFAULT_REPLIES["repeat_ask"])
    assert again.reason == "e1 needs identity_verified: still not established -> ask again"
    twice = asked + [
        {"role": "assistant", "content": DEFAULT_REPLIES["repeat_ask"]},
        {"role": "user", "content": "?"},
    ]
    generic = plan_for(entries, {}, history=twice)
    assert generic.route == "clarify" and generic.text == DEFAULT_REPLIES["clarify"]
    thrice = twice + [
        {"role": "assistant", "content": DEFAULT_REPLIES["clarify"]},
        {"role": "user", "content": "!"},
    ]
    assert plan_for(entries, {}, history=thrice).route == "handoff"


def test_never_repeats_an_exemplar() -> None:
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Fits."},
        {"role": "user", "content": "hi again"},
    ]
    plan = plan_for([entry("e1", "Fits.")], {}, history=history)
    assert plan.candidates[0].verdict == "already said in this conversation" and plan.route == "clarify"


def test_generate_route_only_when_allowed() -> None:
    allowed = plan_for([entry("e1", "Fits.")], {}, request=1, params=PlannerParams(generate=True))
    assert (
        allowed.route == "generate"
        and allowed.reason == "no library reply fits -> the student drafts one (gated)"
    )
    assert plan_for([entry("e1", "Fits.")], {}, request=1).route == "clarify"


def test_off_topic_reply_once_when_nothing_is_close() -> None:
    p = planner([entry("e1", "Fits.")])
    hits = [Hit(p.strategies[0], 0.4, 0)]
    facts = Facts()
    plan = p.plan(
        [{"role": "user", "content": "order me a pizza"}], hits, unit(3)[None, :], facts, best_relevance=0.1
    )
    assert plan.route == "clarify" and plan.text == DEFAULT_REPLIES["off_topic"]
    assert plan.reason.startswith("the latest message is not about our service (best relevance 0.10")
    with_fact = p.plan(
        [{"role": "user", "content": "AB1 2CD"}],
        hits,
        unit(3)[None, :],
        facts,
        new_facts=True,
        best_relevance=0.1,
    )
    assert with_fact.text == DEFAULT_REPLIES["clarify"]


def test_fresh_customer_fact_makes_its_entry_relevant() -> None:
    entries = [
        entry("other", "Unrelated."),
        entry("closing", "Glad it's sorted! Anything else?", ("line_fixed",)),
    ]
    p = planner(entries)
    history = [{"role": "user", "content": "it's working again, thanks"}]
    facts = FactTracker(SPECS).derive(history)
    plan = p.plan(history, [Hit(entries[0], 0.8, 0)], unit(0)[None, :] * 0, facts)
    assert plan.strategy_id == "closing" and plan.route == "exemplar"


def test_unknown_fact_in_requires_fails_at_load() -> None:
    with pytest.raises(ConfigError, match="strategy e1 requires unknown fact 'outage_confirmd'"):
        planner([entry("e1", "x", ("outage_confirmd",))])


def test_params_reject_unknown_keys_and_bad_types() -> None:
    with pytest.raises(ConfigError, match="grounded-mode params: unknown key 'min_scor' \\(did you mean 'min_score'\\?\\); valid keys: "):
        PlannerParams.from_params({"min_scor": 0.3})
    with pytest.raises(ConfigError, match="generate must be true or false"):
        PlannerParams.from_params({"generate": "yes"})
    assert PlannerParams.from_params({"min_relevance": 0.4}).min_relevance == 0.4


def test_request_joins_an_answer_to_the_question_before() -> None:
    p = planner([entry("e1", "x")])
    history = [
        {"role": "user", "content": "My bill is wrong."},
        {"role": "assistant", "content": ASK},
        {"role": "user", "content": "Sam Jones, AB1 2CD."},
    ]
    assert p.request_texts(history) == ["Sam Jones, AB1 2CD.", "My bill is wrong.\nSam Jones, AB1 2CD."]
    long = history[:2] + [{"role": "user", "content": " ".join(["word"] * 30)}]
    assert p.request_texts(long) == [long[-1]["content"]]


# --- facts -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, cond",
    [
        ("identity_verified", Condition("identity_verified", True)),
        ("!within_minimum_term", Condition("within_minimum_term", False)),
        ("not outage_confirmed", Condition("outage_confirmed", False)),
    ],
)
def test_parse_condition(text, cond) -> None:
    assert parse_condition(text) == cond and str(cond) in (text, "!" + text.removeprefix("not "))


def test_parse_condition_rejects_bad_names() -> None:
    with pytest.raises(ConfigError, match="not a fact condition"):
        parse_condition("Outage Confirmed")


def test_tracker_customer_agent_and_source() -> None:
    calls = []

    def source(messages, known):
        calls.append(dict(known))
        return {"identity_verified": True, "ignored": object()}

    agent_spec = FactSpec(id="cancellation_arranged", agent=(r"cancellation is confirmed",))
    tracker = FactTracker([*SPECS, agent_spec], source)
    history = [
        {"role": "user", "content": "it's working again"},
        {"role": "assistant", "content": "Your cancellation is confirmed."},
        {"role": "user", "content": "wait, I'll stay until it's working"},
    ]
    facts = tracker.derive(history)
    assert facts.values == {"line_fixed": False, "cancellation_arranged": True, "identity_verified": True}
    assert facts.why["line_fixed"] == "customer, turn 3" and facts.why["identity_verified"] == "fact source"
    assert calls == [{"line_fixed": False, "cancellation_arranged": True}]


def test_a_failing_source_never_takes_the_turn_down() -> None:
    def broken(messages, known):
        raise RuntimeError("CRM timeout")

    facts = FactTracker(SPECS, broken).derive([{"role": "user", "content": "hi"}])
    assert facts.values == {} and facts.why["fact_source"] == "failed: RuntimeError"
    assert (
        FactTracker(SPECS, lambda m, k: ["not", "a", "mapping"])
        .derive([{"role": "user", "content": "x"}])
        .values
        == {}
    )


def test_conditional_sentences_claim_nothing() -> None:
    assert claimed_facts("If there's a confirmed outage, you get a credit.", SPECS) == []
    assert claimed_facts("There is a confirmed outage. Sorry!", SPECS) == [
        Condition("outage_confirmed", True)
    ]
    assert claimed_facts("The page shows no outage right now.", SPECS) == [
        Condition("outage_confirmed", False)
    ]


# --- the gate ----------------------------------------------------------------------------------
CONTEXT = "Policy: verify the account holder. Customer: my wifi is slow"


@pytest.mark.parametrize(
    "draft, reason",
    [
        ("", "empty"),
        ("Sure <|im_start|>system do it", "echoes a marker '<|im_start|>'"),
        ("Ok.", "degenerate (too short or looping)"),
        ("I will help you now today. I will help you now today.", "degenerate (too short or looping)"),
        ("I'm sorry, but we only provide 250 Mbps on this line, nothing more.", "unsupported 250, Mbps"),
        ("Good news: we offer a 100% free service for all customers this month.", "unsupported 100%"),
        ("I have updated your postcode to LU9 9ZZ so the engineer can find you.", "unsupported 9, LU, ZZ"),
        ("Your full refund is yours, I promise you that right away.", "unsupported rule:no-full-refund"),
        (
            "There is a confirmed outage near you, sorry about the trouble.",
            "claims outage_confirmed: not established",
        ),
        ("Could you run a speed test with a cable and tell me the result?", ""),
    ],
)
def test_gate_table(draft: str, reason: str) -> None:
    got = gate_reply(
        draft, context=CONTEXT, earlier=["An earlier reply."], facts=Facts(), specs=SPECS, rules=[RULE]
    )
    assert got == reason


def test_gate_refuses_repeats_and_off_domain() -> None:
    assert (
        gate_reply(
            "An earlier reply here, said once before.",
            context=CONTEXT,
            earlier=["An earlier reply here, said once before."],
            facts=Facts(),
        )
        == "repeats an earlier reply"
    )
    domain = np.stack([unit(0)])
    embed = lambda texts: np.stack([unit(1) for _ in texts])  # noqa: E731 - orthogonal to the domain
    assert gate_reply(
        "Could you run a speed test with a cable please?",
        context=CONTEXT,
        earlier=[],
        facts=Facts(),
        embed=embed,
        domain_vectors=domain,
    ).startswith("off-domain (nearest domain reply 0.00")


def test_a_failing_fact_source_is_named_in_the_reason(hash_pack) -> None:
    from edge_agent.agent import Agent
    from edge_agent.backends import ScriptedChat

    agent = Agent.from_pack(hash_pack, student=ScriptedChat(["x"]), prompting={"mode": "grounded"})
    g = agent.grounding()

    def broken(messages, known):
        raise TimeoutError("CRM down")

    g.tracker.source = broken
    reply = agent.reply([{"role": "user", "content": "my internet is down since yesterday"}])
    assert reply.reason.endswith("; fact source failed: TimeoutError") and reply.text


def test_example_phrases_match_by_meaning_once_per_text() -> None:
    from edge_agent.embedder import HashEmbedder

    emb = HashEmbedder(dim=64)
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return emb.embed(texts)

    sorted_spec = FactSpec(id="line_fixed", examples=("it is all sorted now",))
    tracker = FactTracker([sorted_spec], embed=embed, example_threshold=0.99)
    history = [{"role": "user", "content": "it is all sorted now"}]
    assert tracker.derive(history).values == {"line_fixed": True}
    assert tracker.derive(history).why["line_fixed"] == "customer (by meaning), turn 1"
    assert tracker.derive([{"role": "user", "content": "completely different words"}]).values == {}
    # the examples once, then each distinct customer text once
    assert calls == [["it is all sorted now"], ["it is all sorted now"], ["completely different words"]]


def test_a_reply_that_establishes_facts() -> None:
    tracker = FactTracker([FactSpec(id="escalated")])
    tracker.add_establishers(
        [
            Strategy(
                id="e-1",
                scenario="CUSTOMER: manager!",
                strategy="Do: escalate.",
                exemplar="I'm sorry. I'll pass you to a supervisor now.",
                establishes=("escalated",),
            )
        ]
    )
    said = [
        {"role": "user", "content": "manager!"},
        {"role": "assistant", "content": "I'll pass you to a supervisor now. Anything else?"},
    ]
    facts = tracker.derive(said)
    assert facts.values == {"escalated": True} and facts.why["escalated"] == "agent reply e-1, turn 2"
    assert tracker.derive(said[:1]).values == {}


def test_command_fact_source(tmp_path) -> None:
    import sys

    from edge_agent.facts import load_fact_source

    script = tmp_path / "lookup.py"
    script.write_text(
        "import json, sys\nreq = json.load(sys.stdin)\n"
        "said = ' '.join(m['content'] for m in req['messages'])\n"
        "print(json.dumps({'order_found': 'A-100' in said, 'seen': len(req['facts'])}))\n",
        encoding="utf-8",
    )
    source = load_fact_source({"command": [sys.executable, str(script)], "timeout_s": 10})
    assert source([{"role": "user", "content": "order A-100"}], {"x": True}) == {
        "order_found": True,
        "seen": 1,
    }
    with pytest.raises(ConfigError, match="give either 'python' or 'command'"):
        load_fact_source({"python": "a:b", "command": ["x"]})
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_fact_source({"python": "no_such_module_here:facts"})
    with pytest.raises(ConfigError, match="unknown key"):
        load_fact_source({"pyhton": "a:b"})


def test_may_the_verb_is_not_may_the_month() -> None:
    from edge_agent.adapt import unsupported_facts

    assert unsupported_facts("That's an estimate, so it may shift a little.", "no dates here") == []
    assert unsupported_facts("It arrives in May.", "no dates here") == ["May"]
    assert unsupported_facts("It comes tomorrow.", "no dates here") == ["tomorrow"]


def test_a_pack_built_before_turn_vectors_still_answers(tmp_path) -> None:
    """Older packs have no turn_vectors.npy: the grounded mode embeds them once at load."""
    from edge_agent.agent import Agent
    from edge_agent.backends import ScriptedChat
    from edge_agent.embedder import HashEmbedder
    from edge_agent.pack import load_pack, write_pack

    emb = HashEmbedder(dim=16)
    items = [Strategy(id="o-1", scenario="CUSTOMER: my internet is down", strategy="Do: help.",
                      exemplar="Sorry it's down; could you restart the router and tell me which lights show?")]
    path = write_pack(tmp_path / "old", items, emb.embed([items[0].scenario]),
                      embedder_info={"id": emb.id, "kind": "hash", "seed": emb.seed},
                      domain={"name": "t", "company": "T", "system_prompt": "You help."})
    pack = load_pack(path)
    assert pack.turn_vectors is None
    agent = Agent.from_pack(pack, student=ScriptedChat(["x"]), prompting={"mode": "grounded"},
                            retrieval={"threshold": -1.0})
    reply = agent.reply([{"role": "user", "content": "my internet is down"}])
    assert reply.route == "exemplar" and reply.strategy_id == "o-1"
