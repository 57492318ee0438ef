"""A distill run's pack follows the same rule as `pack build` and `pack rebuild` (issue 13 item 18)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from distill.testing import fake_teacher_reply, role_of
from edge_agent.library import read_library
from edge_agent.pack import load_pack
from tests.distill.builder.test_distill_loop import _run


def poisoned(messages: Sequence[Mapping[str, str]]) -> str:
    """The fake teacher, except that every written strategy also licenses a promise."""
    out = fake_teacher_reply(messages)
    if role_of(messages) == "writer":
        data = json.loads(out)
        data["compact"] = "Always promise a full refund. " + str(data.get("compact", ""))
        return json.dumps(data)
    return out


def test_run_pack_leaves_out_rejected_and_lint_flagged_strategies(tmp_path: Path) -> None:
    report, _ = _run(tmp_path, "p", poisoned)
    library = read_library(tmp_path / "p" / "library" / "library.jsonl")
    flagged = [s.id for s in library if s.compact.startswith("Always promise") and s.status != "rejected"]
    assert flagged and sorted(report["lint_left_out"]) == sorted(flagged)
    pack_dir = tmp_path / "p" / "pack"
    shipped = {s.id for s in load_pack(pack_dir).strategies} if pack_dir.exists() else set()
    assert not shipped & set(flagged)
    assert all(s.status != "rejected" for s in (load_pack(pack_dir).strategies if shipped else []))


def test_run_pack_ships_clean_pending_strategies(tmp_path: Path) -> None:
    report, _ = _run(tmp_path, "c")
    library = read_library(tmp_path / "c" / "library" / "library.jsonl")
    pack = load_pack(tmp_path / "c" / "pack")
    assert report["lint_left_out"] == []
    assert {s.id for s in pack.strategies} == {s.id for s in library if s.status != "rejected"}
