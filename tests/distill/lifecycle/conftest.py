"""Fixtures for the library lifecycle tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.library import write_library
from tests.conftest import make_strategies


def pending_library(path: Path, n: int, **fields: Any) -> Path:
    """A library file of `n` generated strategies, all pending review (plus any other `fields`)."""
    write_library(path, [s.replace(status="pending", **fields) for s in make_strategies(n)])
    return path
