"""Run infrastructure: the call cache, the journal (torn last line) and budget accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.builder.journal import Journal, read_journal
from distill.config import BudgetSettings, Price
from distill.roles.budget import BudgetExceeded, Meter
from distill.roles.cache import CallCache, request_key
from edge_agent.errors import ConfigError


def test_request_key_depends_on_model_messages_and_params_only() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    k = request_key("m", msgs, {"temperature": 0.0, "max_tokens": 10})
    assert k == request_key("m", [dict(msgs[0])], {"max_tokens": 10, "temperature": 0.0})
    assert k != request_key("m2", msgs, {"temperature": 0.0, "max_tokens": 10})
    assert k != request_key("m", msgs, {"temperature": 0.1, "max_tokens": 10})


def test_cache_round_trip_and_ledger(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.sqlite")
    cache.put("k1", "m", {"messages": []}, {"text": "a"}, run_id="r1", paid=True, prompt_tokens=5,
              completion_tokens=2)
    cache.put("k2", "s", {"messages": []}, {"text": "b"}, run_id="r1", paid=False)
    cache.close()
    again = CallCache(tmp_path / "c.sqlite")
    hit = again.get("k1")
    assert hit is not None and hit.response == {"text": "a"} and hit.paid
    assert again.get("nope") is None
    assert again.spent("r1") == {"m": {"calls": 1, "prompt_tokens": 5, "completion_tokens": 2}}
    assert b"pickle" not in (tmp_path / "c.sqlite").read_bytes()


def test_journal_drops_a_torn_last_line_and_keeps_appending(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.append("a", n=1)
    j.close()
    with (tmp_path / "j.jsonl").open("ab") as fh:
        fh.write(b'{"event": "b", "n"')  # a kill mid-write
    assert [r["event"] for r in read_journal(tmp_path / "j.jsonl")] == ["a"]
    j = Journal(tmp_path / "j.jsonl")
    j.append("c")
    assert [r["event"] for r in j.records()] == ["a", "c"]
    (tmp_path / "bad.jsonl").write_text('{"event": "a"}\nnot json\n{"event": "b"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_journal(tmp_path / "bad.jsonl")


def test_meter_prices_and_limits() -> None:
    meter = Meter(budget=BudgetSettings(max_cost=0.01), prices={"m": Price(input_per_mtok=1000, output_per_mtok=2000)})
    meter.record_paid("m", 4, 1)  # 0.004 + 0.002
    meter.record_hit("m")
    meter.check()
    meter.record_paid("m", 4, 1)
    with pytest.raises(BudgetExceeded, match="cost budget.*resume"):
        meter.check()
    assert meter.total.cache_hits == 1 and meter.to_json()["by_model"]["m"]["calls"] == 2
    calls = Meter(budget=BudgetSettings(max_calls=1))
    calls.restore({"x": {"calls": 1, "prompt_tokens": 3, "completion_tokens": 3}})
    assert calls.exceeded() and "call budget" in (calls.exceeded() or "")
