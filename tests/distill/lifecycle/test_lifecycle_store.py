"""Library store and hand edits: add/edit/remove/import (pure) and show/search/add/edit/remove (CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from distill.lifecycle.store import (
    add_strategy,
    edit_strategy,
    find_strategy,
    import_strategies,
    open_library,
    remove_strategies,
    save_library,
)
from edge_agent.cli import cli
from edge_agent.errors import ConfigError
from edge_agent.library import read_library, strategy_id
from tests.conftest import make_strategies
from tests.distill.lifecycle.conftest import pending_library

AT = "2026-01-02T03:04:05+00:00"


@pytest.fixture
def lib_path(tmp_path: Path) -> Path:
    provenance = {"run": "r1", "teacher": "t-big"}
    return pending_library(tmp_path / "lib.jsonl", 6, source="distilled", provenance=provenance)


def run(*args: str, input: str | None = None) -> click.testing.Result:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def test_add_derives_a_stable_id_and_records_the_author() -> None:
    items, new = add_strategy(make_strategies(2), scenario="CUSTOMER: can I pause my plan?",
                              strategy="Explain plans cannot be paused.", author="ana", at=AT)
    assert new.id == strategy_id("CUSTOMER: can I pause my plan?")
    assert (new.source, new.status, new.provenance["author"]) == ("authored", "pending", "ana")
    assert new.reviews[0].reviewer == "ana" and len(items) == 3
    with pytest.raises(ConfigError, match="already exists"):
        add_strategy(items, scenario="CUSTOMER: can I pause my plan?", strategy="x", author="bo", at=AT)


@pytest.mark.parametrize("changes, status, fields_changed", [
    ({"compact": "New compact."}, None, {"compact"}),
    ({"scenario": "CUSTOMER: other words"}, None, {"scenario"}),
    ({}, "rejected", {"status"}),
    ({"compact": "Apologise, check the outage map, offer a credit."}, None, set()),  # same text: no-op
])
def test_edit_keeps_the_id_and_appends_a_review(changes: dict, status: str | None, fields_changed: set) -> None:
    before = make_strategies(3)
    _after, item = edit_strategy(before, "t-000", changes, reviewer="ana", at=AT, status=status)
    assert item.id == "t-000"
    changed = {k for k in ("scenario", "compact", "status") if getattr(item, k) != getattr(before[0], k)}
    assert changed == fields_changed
    assert len(item.reviews) == len(before[0].reviews) + (1 if fields_changed else 0)
    if fields_changed:
        assert item.reviews[-1].decision == "edited" and item.reviews[-1].reviewer == "ana"


def test_edit_refuses_empty_strategy_and_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="cannot be empty"):
        edit_strategy(make_strategies(2), "t-000", {"strategy": "  "}, reviewer="a", at=AT)
    with pytest.raises(ConfigError, match="cannot edit id"):
        edit_strategy(make_strategies(2), "t-000", {"id": "x"}, reviewer="a", at=AT)


def test_find_by_unique_prefix_and_errors() -> None:
    items = make_strategies(3)
    assert find_strategy(items, "t-002") == 2
    with pytest.raises(ConfigError, match="ambiguous"):
        find_strategy(items, "t-00")
    with pytest.raises(ConfigError, match="no strategy with id 'zz'"):
        find_strategy(items, "zz")


def test_remove_and_import() -> None:
    kept, removed = remove_strategies(make_strategies(4), ["t-001", "t-003"])
    assert [s.id for s in kept] == ["t-000", "t-002"] and len(removed) == 2
    _merged, added = import_strategies(kept, make_strategies(5), origin="other.jsonl", who="ana", at=AT)
    assert [s.id for s in added] == ["t-001", "t-003", "t-004"]
    assert all(s.source == "imported" and s.status == "pending" for s in added)
    assert added[0].provenance["imported_from"] == "other.jsonl" and added[0].provenance["original_source"] == "authored"


def test_packs_are_read_only(hash_pack: Path) -> None:
    lib = open_library(hash_pack)
    assert lib.is_pack and len(lib.strategies) == 8
    with pytest.raises(ConfigError, match="is a pack.*pack rebuild"):
        save_library(lib, lib.strategies)


def test_cli_show_list_detail_and_json(lib_path: Path) -> None:
    out = run("library", "show", str(lib_path)).output
    assert "6 strategies (0 approved, 6 pending" in out and "t-005" in out
    detail = run("library", "show", str(lib_path), "t-001").output
    assert "provenance.teacher: t-big" in detail and "scenario:" in detail
    rows = json.loads(run("library", "show", str(lib_path), "--json", "--status", "approved").output)
    assert rows == []


def test_cli_search_text_and_retrieval(lib_path: Path, hash_pack: Path) -> None:
    hits = json.loads(run("library", "search", str(lib_path), "router orange", "--json").output)
    assert [h["id"] for h in hits] == ["t-002"]
    found = json.loads(run("library", "search", str(hash_pack), "the router lights are blinking orange",
                           "--by", "retrieval", "--json", "-k", "2").output)
    assert found[0]["id"] == "t-002" and found[0]["score"] > 0.5
    found = json.loads(run("library", "search", str(lib_path), "blinking orange router lights", "--by", "retrieval",
                           "--embedder", "hash:32", "--json").output)
    assert found[0]["id"] == "t-002"
    bad = CliRunner().invoke(cli, ["library", "search", str(lib_path), "x", "--by", "retrieval"])
    assert bad.exit_code == 1 and "needs --embedder" in bad.output


def test_cli_add_edit_remove_roundtrip(lib_path: Path, tmp_path: Path) -> None:
    out = run("library", "add", str(lib_path), "--scenario", "CUSTOMER: can I pause my plan?", "--strategy",
              "Explain that plans cannot be paused.", "--approve", "--reviewer", "ana", "--json").output
    new_id = json.loads(out)["added"][0]
    added = read_library(lib_path)[-1]
    assert (added.id, added.status, added.source) == (new_id, "approved", "authored")
    run("library", "edit", str(lib_path), new_id, "--compact", "Plans cannot be paused.", "--note", "shorter",
        "--reviewer", "bo")
    edited = read_library(lib_path)[-1]
    assert edited.compact == "Plans cannot be paused." and edited.reviews[-1].reviewer == "bo"
    assert edited.reviews[-1].note == "shorter"
    assert "removed 1; 6 left" in run("library", "remove", str(lib_path), new_id, "--yes").output
    refused = CliRunner().invoke(cli, ["library", "remove", str(lib_path), "t-000"], input="n\n")
    assert refused.exit_code == 1 and len(read_library(lib_path)) == 6
    # a new library file is created by the first add
    fresh = tmp_path / "new.jsonl"
    run("library", "add", str(fresh), "--import", str(lib_path))
    assert all(s.source == "imported" for s in read_library(fresh))


def test_cli_edit_in_editor(lib_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_edit(text: str, **_: object) -> str:
        assert "=== compact ===" in text
        return text.replace("Walk through a restart of the router step by step.", "Ask them to restart the router.")

    monkeypatch.setattr(click, "edit", fake_edit)
    assert "edited t-002" in run("library", "edit", str(lib_path), "t-002").output
    assert read_library(lib_path)[2].compact == "Ask them to restart the router."


def test_cli_edit_of_a_pack_names_the_fix(hash_pack: Path) -> None:
    result = CliRunner().invoke(cli, ["library", "edit", str(hash_pack), "t-000", "--compact", "x"])
    assert result.exit_code == 1 and "library export" in result.output and "--format jsonl" in result.output


def test_cli_export_jsonl_from_pack(hash_pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.jsonl"
    run("library", "export", str(hash_pack), "--format", "jsonl", "-o", str(out))
    assert [s.id for s in read_library(out)] == [f"t-{i:03d}" for i in range(8)]
