"""Statistics of the evaluation on data with known answers (pass^k, CIs, paired differences)."""

from __future__ import annotations

import pytest

from distill.evaluation.records import Case, Conversation, Turn
from distill.evaluation.statistics import metric_value, pass_hat_k, passed, summarise


def _conv(condition: str, persona: int, score: int | None, *, trial: int = 0, sim: float | None = None,
          violations: tuple[str, ...] = (), strategies: tuple[str, ...] = ()) -> Conversation:
    case = Case(persona={"style": f"p{persona}"}, intent="outage", trial=trial)
    turn = Turn(customer="hi", reply="hello", similarity=sim, violations=list(violations),
                strategies=list(strategies), latency_ms=10.0 * (persona + 1))
    return Conversation(condition=condition, case=case, turns=[turn], judge_score=score)


@pytest.mark.parametrize("successes,k,expected", [
    ({"a": [True, True, True, True]}, 2, 1.0),
    ({"a": [True, True, False, False]}, 1, 0.5),
    ({"a": [True, True, False, False]}, 2, 1 / 6),  # C(2,2)/C(4,2)
    ({"a": [True, True, True, False], "b": [False, False, False, False]}, 3, 0.125),  # (1/4 + 0)/2
    ({"a": [True]}, 2, None),  # no case has 2 trials
])
def test_pass_hat_k_known_values(successes: dict[str, list[bool]], k: int, expected: float | None) -> None:
    got = pass_hat_k(successes, k)
    assert got == expected if expected is None else got == pytest.approx(expected)


def test_pass_k_from_trials_in_summary() -> None:
    convs = [_conv("base", p, 5 if (p + t) % 2 == 0 else 2, trial=t) for p in range(4) for t in range(2)]
    row = summarise(convs, resamples=200)["conditions"]["base"]
    assert row["pass_k"]["1"] == pytest.approx(0.5)
    assert row["pass_k"]["2"] == pytest.approx(0.0)  # each persona passes exactly one of its two trials


def test_better_condition_has_ci_excluding_zero() -> None:
    convs = []
    for p in range(20):
        base = 2 + p % 2  # 2 or 3
        convs += [_conv("base", p, base, sim=0.3 + 0.01 * p), _conv("pack", p, base + 1 + p % 2,
                                                                   sim=0.5 + 0.01 * p)]
    summary = summarise(convs, baseline="base", resamples=1000)
    diff = summary["differences"]["pack - base"]
    assert diff["judge"]["excludes_zero"] and diff["judge"]["low"] > 0
    assert diff["judge"]["mean"] == pytest.approx(1.5)
    assert diff["similarity"]["mean"] == pytest.approx(0.2)
    assert summary["conditions"]["pack"]["excellent"]["count"] == 10  # odd personas: base 3, pack 3 + 1 + 1


def test_equal_conditions_have_ci_including_zero() -> None:
    convs = []
    for p in range(30):
        convs += [_conv("a", p, 3 + (p % 3 == 0)), _conv("b", p, 3 + (p % 3 == 1))]
    diff = summarise(convs, baseline="a", resamples=1000)["differences"]["b - a"]["judge"]
    assert not diff["excludes_zero"]
    assert diff["low"] < 0 < diff["high"]


def test_unmeasured_metrics_are_left_out_and_primary_falls_back() -> None:
    convs = [_conv("base", p, None, sim=0.5) for p in range(3)]
    summary = summarise(convs, resamples=100)
    assert "judge" not in summary["measured"]
    assert summary["primary"] == "similarity"
    assert summary["conditions"]["base"]["excellent"] is None


def test_violations_fail_a_trial_and_count() -> None:
    bad = _conv("base", 0, 5, violations=("no-calm-down",))
    assert not passed(bad)
    assert metric_value(bad, "violations") == 1.0
    assert passed(_conv("base", 0, 4)) and not passed(_conv("base", 0, 3))
    assert passed(_conv("base", 0, None, sim=0.7)) and not passed(_conv("base", 0, None, sim=0.2))


def test_tables_for_plots() -> None:
    convs = [_conv("pack", p, 3 + p, strategies=("s1", "s2") if p else ("s1",)) for p in range(2)]
    convs += [_conv("base", p, 2) for p in range(2)]
    summary = summarise(convs, baseline="base", resamples=100)
    assert summary["strategies"]["pack"] == {"s1": 2, "s2": 1}
    assert summary["strategies"]["base"] == {}
    table = summary["per_persona"]
    assert table["conditions"] == ["pack", "base"] and table["personas"] == ["style=p0", "style=p1"]
    assert table["values"] == [[3.0, 4.0], [2.0, 2.0]]
    assert summary["latency_by_turn"]["base"] == [[10.0, 20.0]]
