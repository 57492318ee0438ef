"""Review: decision files (JSON and TOML), the pure core, the editor text and the interactive walk."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from distill.lifecycle.review import (
    Decision,
    apply_decision,
    apply_decisions,
    editable_text,
    parse_decisions,
    parse_editable_text,
)
from edge_agent.cli import cli
from edge_agent.errors import ConfigError
from edge_agent.library import read_library
from tests.conftest import make_strategies
from tests.distill.lifecycle.conftest import pending_library

AT = "2026-01-02T03:04:05+00:00"


@pytest.fixture
def lib_path(tmp_path: Path) -> Path:
    return pending_library(tmp_path / "lib.jsonl", 5)


@pytest.mark.parametrize("word, edits, status, recorded", [
    ("approve", None, "approved", "approved"),
    ("reject", None, "rejected", "rejected"),
    ("pending", None, "pending", "pending"),
    ("edit", {"compact": "Shorter."}, "approved", "edited"),
    ("approve", {"compact": "Shorter."}, "approved", "edited"),  # approving with changes is an edit
    ("edit", {"compact": "Apologise, check the outage map, offer a credit."}, "approved", "approved"),  # no change
])
def test_apply_decision(word: str, edits: dict | None, status: str, recorded: str) -> None:
    s = make_strategies(1)[0].replace(status="pending")
    out = apply_decision(s, Decision(id=s.id, decision=word, note="n", edits=edits), reviewer="ana", at=AT)
    assert (out.status, out.reviews[-1].decision, out.reviews[-1].reviewer, out.reviews[-1].at) == (
        status, recorded, "ana", AT)
    assert out.id == s.id and out.compact == ((edits or {}).get("compact") or s.compact)


def test_bad_decisions_name_the_fix() -> None:
    s = make_strategies(1)[0]
    with pytest.raises(ConfigError, match="use approve, reject, edit or pending"):
        apply_decision(s, Decision(id=s.id, decision="maybe"), reviewer="a", at=AT)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_decisions([{"id": "x", "decision": "approve", "colour": "red"}], "d.json")
    with pytest.raises(ConfigError, match="needs string 'id' and 'decision'"):
        parse_decisions([{"id": "x"}], "d.json")
    with pytest.raises(ConfigError, match="no strategy with id"):
        apply_decisions([s], [Decision(id="nope", decision="approve")], reviewer="a", at=AT)


def test_decision_file_shapes_parse_the_same() -> None:
    full, who = parse_decisions({"reviewer": "ana", "decisions": [{"id": "t-000", "decision": "approve"}]}, "f")
    short, none = parse_decisions({"t-000": "approve"}, "f")
    assert [(d.id, d.decision) for d in full] == [(d.id, d.decision) for d in short] == [("t-000", "approve")]
    assert (who, none) == ("ana", None)


def test_editor_text_roundtrip() -> None:
    s = make_strategies(1)[0]
    text = editable_text(s)
    assert parse_editable_text(text) == {"scenario": s.scenario, "strategy": s.strategy, "compact": s.compact,
                                         "exemplar": s.exemplar}
    assert parse_editable_text("# only comments\n\n") is None
    with pytest.raises(ConfigError, match="unknown section"):
        parse_editable_text("=== colour ===\nred\n")


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_cli_review_from_file(lib_path: Path, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"decisions{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"reviewer": "ana", "decisions": [
            {"id": "t-000", "decision": "approve"},
            {"id": "t-001", "decision": "reject", "note": "promises too much"},
            {"id": "t-002", "decision": "edit", "compact": "Restart the router, then check the lights."}]}))
    else:
        path.write_text('reviewer = "ana"\n[[decisions]]\nid = "t-000"\ndecision = "approve"\n'
                        '[[decisions]]\nid = "t-001"\ndecision = "reject"\nnote = "promises too much"\n'
                        '[[decisions]]\nid = "t-002"\ndecision = "edit"\n'
                        'compact = "Restart the router, then check the lights."\n')
    result = CliRunner().invoke(cli, ["library", "review", str(lib_path), "--decisions", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["rejected"] == 1
    items = {s.id: s for s in read_library(lib_path)}
    assert [items[i].status for i in ("t-000", "t-001", "t-002", "t-003")] == [
        "approved", "rejected", "approved", "pending"]
    assert items["t-001"].reviews[-1].note == "promises too much" and items["t-001"].reviews[-1].reviewer == "ana"
    assert items["t-002"].compact == "Restart the router, then check the lights."
    assert items["t-002"].reviews[-1].decision == "edited"


def test_cli_review_interactive(lib_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(click, "edit", lambda text, **_: text.replace("Ask for the new address and the moving date.",
                                                                     "Ask for the new postcode and moving date."))
    # t-000 approve, t-001 reject with a note, t-002 skip, t-003 edit, then quit before t-004
    keys = "a\nr\nmakes promises\ns\ne\nq\n"
    result = CliRunner().invoke(cli, ["library", "review", str(lib_path), "--reviewer", "bo"], input=keys)
    assert result.exit_code == 0, result.output
    assert "3 decided; now 2 approved, 2 pending, 1 rejected" in result.output
    items = {s.id: s for s in read_library(lib_path)}
    assert [items[f"t-00{i}"].status for i in range(5)] == ["approved", "rejected", "pending", "approved", "pending"]
    assert items["t-003"].compact == "Ask for the new postcode and moving date."
    assert items["t-001"].reviews[-1].note == "makes promises" and items["t-001"].reviews[-1].reviewer == "bo"


def test_cli_review_saves_after_each_decision(lib_path: Path) -> None:
    # input ends after the first decision: the walk aborts, but the approval is already on disk
    result = CliRunner().invoke(cli, ["library", "review", str(lib_path), "--reviewer", "bo"], input="a\n")
    assert result.exit_code != 0
    assert read_library(lib_path)[0].status == "approved"
