"""The adapt mode: fit check over names/numbers/dates/commitments, routes and fallbacks."""

from __future__ import annotations

import pytest

from edge_agent.adapt import AdaptParams, choose_adapted, fit_exemplar, is_degenerate, unsupported_facts
from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.embedder import HashEmbedder
from edge_agent.index import ExactIndex
from edge_agent.library import Strategy
from edge_agent.policy import PolicyRule
from edge_agent.rendering import PromptConfig
from edge_agent.retrieval import Hit, RetrievalConfig, Retriever

CONTEXT = "Policy: travel credits are offered at Yale Airline.\nCUSTOMER: I booked flight 442 for March."
RULE = PolicyRule(id="refund", kind="forbidden_promise", pattern=r"\bi will refund\b")


@pytest.mark.parametrize(
    "sentence,expected",
    [
        ("I understand how you feel.", []),
        ("Your flight 442 in March is covered.", []),
        ("Your flight 118 in March is covered.", ["118"]),
        ("It costs $200 and is due Friday.", ["$200", "Friday"]),
        ("Thank you, Mr. Smith, for waiting.", ["Smith"]),
        ("You can use travel credits at Yale Airline.", []),
        ("Sure, Jessica can help you.", ["Jessica"]),
        ("I've already processed your request.", ["I've already processed"]),
        ("I will refund it.", ["I will refund", "rule:refund"]),
    ],
)
def test_unsupported_facts(sentence: str, expected: list[str]) -> None:
    assert unsupported_facts(sentence, CONTEXT, [RULE]) == expected


def test_fit_drops_sentences_and_fails_past_max_drop() -> None:
    fitted = fit_exemplar("AGENT: I'm sorry. Your ticket 9981 is void. We can offer travel credits.", CONTEXT)
    assert (
        fitted.ok
        and fitted.text == "I'm sorry. We can offer travel credits."
        and fitted.dropped == ["Your ticket 9981 is void."]
    )
    bad = fit_exemplar("Hi Jessica. Ticket 9981 is void. OK.", CONTEXT, params=AdaptParams(max_drop=0.5))
    assert not bad.ok and "2 of 3 sentences" in bad.reason


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Too short.", True),
        ("I can offer you travel credits for the full value of the ticket today.", False),
        ("I can help you with that today. I can help you with that today.", True),
        ("Sure [[AGENT GUIDANCE]] here are some words for you now", True),
    ],
)
def test_is_degenerate(text: str, expected: bool) -> None:
    assert is_degenerate(text) is expected


EX = "I'm sorry about the change of plans. We can offer travel credits for the value of your ticket."
HIT = Hit(Strategy(id="a", scenario="CUSTOMER: refund please", strategy="s", exemplar=EX), 0.9, 0)
HIST = [{"role": "user", "content": "I booked flight 442 for March and want a refund."}]


def test_choose_routes() -> None:
    gen = ScriptedChat(
        ["I'm sorry about the change. We can offer travel credits for the value of your ticket."]
    )
    generate = lambda m: gen.chat(m).text
    assert choose_adapted(CONTEXT, HIST, [HIT], {}, [], generate) == (EX, "exemplar")
    assert gen.calls == []  # no student call when the exemplar is reused
    text, route = choose_adapted(CONTEXT, HIST, [HIT], {"revise": True}, [], generate)
    assert route == "revised" and text.startswith("I'm sorry about the change.")
    assert "DRAFT REPLY" in gen.calls[0][-1]["content"] and EX in gen.calls[0][-1]["content"]
    low = Hit(HIT.strategy, 0.3, 0)
    assert choose_adapted(CONTEXT, HIST, [low], {"min_score": 0.6}, [], generate)[1].startswith(
        "fallback:score"
    )
    assert choose_adapted(CONTEXT, HIST, [], {}, [], generate) == ("", "fallback:no exemplar")
    looping = ScriptedChat(["Yes. Yes. Yes."])
    assert choose_adapted(CONTEXT, HIST, [HIT], {"revise": True}, [], lambda m: looping.chat(m).text) == (
        EX,
        "exemplar",
    )


def _agent(student: ScriptedChat, exemplar: str, params: dict) -> Agent:
    strategies = [
        Strategy(
            id="a",
            scenario="CUSTOMER: I booked flight 442 and want a refund",
            strategy="s",
            compact="Offer credits.",
            exemplar=exemplar,
        )
    ]
    emb = HashEmbedder(dim=32)
    vectors = emb.embed([s.scenario for s in strategies])
    retriever = Retriever(emb, ExactIndex(vectors), strategies, vectors, RetrievalConfig(threshold=0.0))
    return Agent(
        student,
        system_prompt=CONTEXT,
        retriever=retriever,
        prompting=PromptConfig.from_mapping({"mode": "adapt", "params": params}),
    )


def test_agent_adapt_reuses_or_falls_back() -> None:
    student = ScriptedChat(default="Generated reply.")
    reply = _agent(student, EX, {"min_score": 0.0}).reply(HIST)
    assert (reply.text, reply.route, reply.mode, student.calls) == (EX, "exemplar", "adapt", [])
    # an exemplar full of another conversation's facts falls back to a (streamed) generation
    misfit = "Hello Jessica. Your ticket 9981 was refunded on Friday. Thanks."
    stream = _agent(student, misfit, {"min_score": 0.0, "fallback": "compact"}).stream(HIST)
    assert "".join(stream) == "Generated reply."
    assert stream.reply is not None and stream.reply.route.startswith("fallback:")
    assert "Offer credits." in student.calls[-1][-1]["content"]  # the fallback mode's rendering


def test_rerank_prefers_exemplar_close_to_message() -> None:
    import numpy as np

    from edge_agent.adapt import rerank_hits

    a, b = (
        Hit(Strategy(id="a", scenario="x", strategy="s", exemplar="A."), 0.80, 0),
        Hit(Strategy(id="b", scenario="y", strategy="s", exemplar="B."), 0.75, 1),
    )
    msg = np.array([1.0, 0.0])
    exemplars = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert [h.strategy.id for h in rerank_hits([a, b], msg, exemplars, 1.0)] == ["b", "a"]
    assert [h.strategy.id for h in rerank_hits([a, b], msg, exemplars, 0.01)] == ["a", "b"]
