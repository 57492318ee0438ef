"""Pure decisions of the build loop: stop rules, best round, item limits, driver schedule, parsing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from distill.builder.hygiene import apply_merges, dedupe
from distill.builder.improve import best_round, limit_items, should_continue
from distill.builder.rollout import pick_driver, rollout_rng, split_end
from distill.builder.scenarios import cut_scenarios, sample_scenarios
from distill.config import LoopSettings, RunSettings
from distill.roles.schemas import (
    Judgement,
    MalformedOutput,
    StrategyDraft,
    StrategyItem,
    clean_compact,
    parse_output,
)
from edge_agent.errors import ConfigError
from edge_agent.library import Strategy


@pytest.mark.parametrize("scores, rounds, stop_at_max, expected", [
    ([], 5, True, True),
    ([3], 5, True, True),
    ([3, 4], 5, True, True),
    ([3, 4, 3], 5, True, False),  # dropped
    ([3, 3], 5, True, True),  # equal is not a drop
    ([5], 5, True, False),  # cannot improve on 5
    ([5], 5, False, True),
    ([1, 2, 3, 4, 4], 5, True, False),  # round cap
    ([2], 1, True, False),
])
def test_should_continue(scores: list[int], rounds: int, stop_at_max: bool, expected: bool) -> None:
    assert should_continue(scores, rounds, stop_at_max) is expected


@pytest.mark.parametrize("scores, expected", [([], -1), ([3], 0), ([2, 4, 3], 1), ([4, 4, 2], 0), ([1, 2, 5, 5], 2)])
def test_best_round_prefers_earliest_on_ties(scores: list[int], expected: int) -> None:
    assert best_round(scores) == expected


def test_limit_items_dedupes_and_caps_at_max() -> None:
    items = [StrategyItem(do=f"Step {i}") for i in range(14)] + [StrategyItem(do="step 0  ")]
    out = limit_items(items, 10)
    assert len(out) == 10
    assert [i.do for i in out][:2] == ["Step 0", "Step 1"]
    assert len(limit_items([StrategyItem(do="A"), StrategyItem(do="a")], 10)) == 1


def test_driver_schedule_follows_p_and_seed() -> None:
    for p, low, high in ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.6, 0.55, 0.65), (0.3, 0.25, 0.35)):
        rng = random.Random(7)
        share = sum(pick_driver(rng, p) == "teacher" for _ in range(4000)) / 4000
        assert low <= share <= high, (p, share)
    a = [pick_driver(rollout_rng(3, 1, "c-1"), 0.5) for _ in range(1)]
    assert a == [pick_driver(rollout_rng(3, 1, "c-1"), 0.5)]
    seq = lambda seed: [pick_driver(r, 0.5) for r in [rollout_rng(seed, 1, "c-1")] for _ in range(30)]
    assert seq(1) == seq(1) and seq(1) != seq(2)


@pytest.mark.parametrize("text, clean, ended", [
    ("Thanks, bye! [END]", "Thanks, bye!", True),
    ("CUSTOMER: I want my money back.", "I want my money back.", False),
    ("ok [end] ", "ok", True),
    ("  ", "", False),
])
def test_split_end(text: str, clean: str, ended: bool) -> None:
    assert split_end(text, "[END]") == (clean, ended)


def test_cut_scenarios_after_each_customer_turn() -> None:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(7)]
    cuts = cut_scenarios(msgs, (1, 2, 4, 9), stage=0, customer_id="c")
    assert [c.turn for c in cuts] == [1, 2, 4]
    assert [len(c.history) for c in cuts] == [1, 3, 7]
    assert all(c.history[-1]["role"] == "user" for c in cuts)
    again = cut_scenarios(msgs, (1,), stage=1, customer_id="d")
    assert again[0].id == cuts[0].id  # same text, same strategy id
    assert len(sample_scenarios(cuts + again, None, 0, 0)) == 3
    assert len(sample_scenarios(cuts, 2, 0, 0)) == 2


@pytest.mark.parametrize("text", [
    '{"score": 4, "reason": "close"}',
    'Sure!\n```json\n{"score": 4}\n```',
    'My verdict: {"score": 4, "reason": "x"} thanks',
])
def test_parse_output_accepts_wrapped_json(text: str) -> None:
    assert parse_output(text, Judgement).score == 4


@pytest.mark.parametrize("text, reason", [
    ("no json here", "no JSON object"),
    ('{"score": 9}', "score"),
    ('{"score": 4', "invalid JSON"),
    ("", "empty"),
])
def test_parse_output_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(MalformedOutput, match=reason):
        parse_output(text, Judgement)


def test_compact_is_plain_and_short() -> None:
    long = "**Acknowledge** the delay. " + " ".join(["Offer the credit now."] * 20)
    out = clean_compact(long)
    assert "*" not in out and len(out.split()) <= 45
    draft = StrategyDraft.model_validate({"items": [{"do": "x"}], "compact": "- Say sorry.\n- Offer a credit."})
    assert draft.compact == "Say sorry. Offer a credit."


def _s(i: str, score: int, stage: int = 0) -> Strategy:
    return Strategy(id=i, scenario=f"CUSTOMER: {i}", strategy="x", source="distilled", status="pending",
                    provenance={"best_score": score, "stage": stage})


def test_dedupe_keeps_better_and_records_merge() -> None:
    vecs = np.array([[1, 0], [0.999, 0.045], [0, 1]], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items = [_s("a", 3), _s("b", 5), _s("c", 2)]
    keep, merges = dedupe(items, vecs, 0.95)
    assert keep == [1, 2]
    assert merges[0].kept == "b" and merges[0].dropped == "a"
    out = apply_merges(items, keep, merges)
    assert out[0].provenance["merged"][0]["id"] == "a"


def test_settings_validation_names_the_problem() -> None:
    with pytest.raises(ConfigError, match="stages"):
        RunSettings().with_overrides(loop={"stages": (1.5,)})
    with pytest.raises(ConfigError, match="teacher"):
        RunSettings().endpoint("judge")
    s = RunSettings().with_overrides(teacher={"base_url": "http://127.0.0.1:1/v1", "model": "t"})
    assert s.endpoint("judge").model == "t" and s.endpoint("judge").temperature == 0.0
    assert LoopSettings().stages == (1.0, 0.6, 0.3)
    with pytest.raises(ConfigError, match="unknown"):
        from distill.config import parse_settings
        parse_settings({"loop": {"stagez": [1]}}, "x")
