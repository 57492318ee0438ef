"""Diff on known edits: added, removed, changed fields, word diffs, JSON and the CLI on packs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.lifecycle.diff import diff_libraries, render_diff, word_diff
from edge_agent.cli import cli
from edge_agent.library import Review, Strategy, write_library
from tests.conftest import make_strategies


@pytest.mark.parametrize("old, new, expected", [
    ("a b c", "a b c", "a b c"),
    ("Offer a credit.", "Offer a £20 credit.", "Offer a {+£20 +}credit."),
    ("Say no.", "Say yes.", "Say [-no-]{+yes+}."),
    ("", "new", "{+new+}"),
])
def test_word_diff(old: str, new: str, expected: str) -> None:
    assert word_diff(old, new) == expected


def _edited() -> tuple[list[Strategy], list[Strategy]]:
    old = make_strategies(4)
    new = [old[0],
           old[1].replace(compact="Explain partial months are never refunded.", status="rejected",
                          reviews=(Review("ana", "2026-01-01T00:00:00+00:00", "rejected", "wrong"),)),
           old[3],
           Strategy(id="n-1", scenario="CUSTOMER: pause?", strategy="Explain pausing is not possible.")]
    return old, new


def test_diff_known_edits() -> None:
    old, new = _edited()
    d = diff_libraries(old, new)
    assert [s.id for s in d.added] == ["n-1"] and [s.id for s in d.removed] == ["t-002"]
    assert [c.id for c in d.changed] == ["t-001"] and d.unchanged == 2
    assert d.changed[0].fields == ["compact", "status", "reviews"]
    compact = d.changed[0].changes[0]
    assert compact.words == "Explain partial months are [-not-]{+never+} refunded[-; offer a credit-]."
    data = d.to_json()
    assert data["summary"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 2}
    assert data["changed"][0]["changes"][0]["unified"][-1].startswith("+Explain partial months are never")
    text = render_diff(d)
    assert "+ n-1" in text and "- t-002" in text and "status: approved -> rejected" in text
    assert "review: 2026-01-01T00:00:00+00:00 ana rejected: wrong" in text
    assert diff_libraries(old, old).empty


def test_diff_restricted_fields() -> None:
    old, new = _edited()
    d = diff_libraries(old, new, fields=("strategy",))
    assert d.changed == [] and d.unchanged == 3


def test_cli_diff_library_against_pack(hash_pack: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib.jsonl"
    runner = CliRunner()
    assert runner.invoke(cli, ["library", "export", str(hash_pack), "--format", "jsonl", "-o", str(lib)]).exit_code == 0
    same = runner.invoke(cli, ["library", "diff", str(hash_pack), str(lib), "--exit-code"])
    assert same.exit_code == 0 and "0 added, 0 removed, 0 changed, 8 unchanged" in same.output
    runner.invoke(cli, ["library", "edit", str(lib), "t-004", "--compact", "Verify the holder first."],
                  catch_exceptions=False)
    changed = runner.invoke(cli, ["library", "diff", str(hash_pack), str(lib), "--exit-code"])
    assert changed.exit_code == 1 and "~ t-004  (compact, reviews)" in changed.output
    data = json.loads(runner.invoke(cli, ["library", "diff", str(hash_pack), str(lib), "--json"]).output)
    assert data["changed"][0]["changes"][0]["new"] == "Verify the holder first."
    write_library(lib, [])
    assert "8 removed" in runner.invoke(cli, ["library", "diff", str(hash_pack), str(lib)]).output
