"""Rebuild a pack from a library without the teacher: re-embed, re-index, reuse what is unchanged.

Rejected strategies never reach the pack; `approved_only` also drops pending ones. Vectors of
strategies whose index text and embedder are unchanged come from the previous pack, so only edited
or new rows are embedded. The output is a pure function of the inputs (same input, same hashes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.domain import Domain
from edge_agent.embedder import Embedder, HashEmbedder, OnnxEmbedder
from edge_agent.errors import ConfigError
from edge_agent.library import Strategy
from edge_agent.pack import EMBEDDER_DIR, BuildReport, Pack
from edge_agent.pack.make import PackSource, make_pack

from .lint import Flag

__all__ = ["RebuildResult", "open_embedder", "pack_source", "rebuild_pack"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildResult:
    report: BuildReport
    embedder_id: str
    dropped_rejected: int
    dropped_pending: int
    flags: list[Flag] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.report.path), "strategies": self.report.strategies,
                "embedded": self.report.embedded, "reused": self.report.reused, "embedder": self.embedder_id,
                "dropped_rejected": self.dropped_rejected, "dropped_pending": self.dropped_pending,
                "lint_flags": len(self.flags)}


def open_embedder(spec: str | Path | None, old: Pack | None, default_dir: Path) -> tuple[Embedder, Path | None]:
    """The embedder to build with, and the directory to bundle (None for the test hash embedder).

    `spec` is an exported ONNX embedder directory, or `hash[:DIM[:SEED]]`; without it the previous
    pack's embedder is kept, else the default exported one is used.
    """
    if spec is None and old is not None:
        if old.embedder_info.get("kind") == "hash":
            return old.open_embedder(), None
        return old.open_embedder(), old.path / EMBEDDER_DIR
    text = str(spec) if spec is not None else ""
    if text == "hash" or text.startswith("hash:"):
        parts = text.split(":")[1:]
        try:
            dim = int(parts[0]) if parts else 64
            seed = int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            raise ConfigError(f"embedder {text!r}: use hash, hash:DIM or hash:DIM:SEED") from None
        return HashEmbedder(dim=dim, seed=seed), None
    directory = Path(text) if text else default_dir
    return OnnxEmbedder(directory), directory


def pack_source(domain: Domain | None, old: Pack | None) -> PackSource:
    """Domain block, settings, rules, facts and data files: from the domain file, else the old pack."""
    if domain is not None:
        return PackSource.from_domain(domain)
    if old is not None:
        return PackSource.from_pack(old)
    raise ConfigError("no domain for a new pack; pass --domain DOMAIN.toml or --pack OLD_PACK")


def rebuild_pack(
    out: Path,
    strategies: Sequence[Strategy],
    embedder: Embedder,
    source: PackSource,
    *,
    embedder_dir: Path | None,
    reuse: Pack | None = None,
    approved_only: bool = False,
    allow_lint_flags: bool = False,
    build: Mapping[str, Any] | None = None,
    force: bool = False,
) -> RebuildResult:
    """Lint, then embed (incrementally against `reuse`) and write the pack to `out` (see `make_pack`)."""
    if reuse is not None and reuse.embedder_info.get("id") != embedder.id:
        log.info("embedder changed (%s -> %s): every strategy is embedded again",
                 reuse.embedder_info.get("id"), embedder.id)
    result = make_pack(out, strategies, embedder, source, embedder_dir=embedder_dir, approved_only=approved_only,
                       on_flags="allow" if allow_lint_flags else "refuse",
                       build={"tool": "pack rebuild", **dict(build or {})}, reuse=reuse, force=force)
    report = result.report
    if report is None:  # only on_flags="leave_out" writes no pack
        raise ConfigError(f"no pack written to {out}")
    log.info("rebuilt %s: %d strategies, %d embedded, %d reused", out, report.strategies, report.embedded,
             report.reused)
    return RebuildResult(report=report, embedder_id=embedder.id, dropped_rejected=result.dropped_rejected,
                         dropped_pending=result.dropped_pending, flags=result.flags)
