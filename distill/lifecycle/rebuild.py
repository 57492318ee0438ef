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

from edge_agent.domain import Domain, PolicyRule
from edge_agent.embedder import Embedder, HashEmbedder, OnnxEmbedder
from edge_agent.errors import ConfigError
from edge_agent.library import Strategy
from edge_agent.lint import fact_flags
from edge_agent.pack import EMBEDDER_DIR, BuildReport, Pack, PackSettings, build_pack

from .lint import Flag, gate, lint_strategies, rules_from_manifest

__all__ = ["RebuildResult", "open_embedder", "rebuild_pack", "select_for_pack"]

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


def select_for_pack(strategies: Sequence[Strategy], approved_only: bool) -> tuple[list[Strategy], int, int]:
    """(strategies to pack, rejected dropped, pending dropped)."""
    rejected = sum(s.status == "rejected" for s in strategies)
    kept = [s for s in strategies if s.status != "rejected"]
    pending = sum(s.status == "pending" for s in kept) if approved_only else 0
    if approved_only:
        kept = [s for s in kept if s.status == "approved"]
    return kept, rejected, pending


def domain_parts(domain: Domain | None, old: Pack | None) -> tuple[dict[str, Any], PackSettings, list[PolicyRule]]:
    """Manifest domain block, settings and policy rules: from the domain file, else the old pack."""
    if domain is not None:
        settings = PackSettings(retrieval=domain.settings.get("retrieval", {}),
                                prompting=domain.settings.get("prompting", {}),
                                generation=domain.settings.get("generation", {}))
        return domain.to_manifest(), settings, list(domain.rules)
    if old is not None:
        block = dict(old.manifest.get("domain", {}))
        return block, old.settings, rules_from_manifest(block)
    raise ConfigError("no domain for a new pack; pass --domain DOMAIN.toml or --pack OLD_PACK")


def domain_data_files(domain: Domain | None, old: Pack | None) -> dict[str, Path]:
    """The fact-source data files the new pack carries: the domain file's, else the old pack's own."""
    if domain is not None:
        return domain.data_files()
    if old is not None:
        return {rel: old.path / rel for rel in old.manifest.get("files", {}) if str(rel).startswith("facts/")}
    return {}


def rebuild_pack(
    out: Path,
    strategies: Sequence[Strategy],
    embedder: Embedder,
    *,
    embedder_dir: Path | None,
    domain: Mapping[str, Any],
    settings: PackSettings,
    rules: Sequence[PolicyRule] = (),
    reuse: Pack | None = None,
    approved_only: bool = False,
    allow_lint_flags: bool = False,
    build: Mapping[str, Any] | None = None,
    force: bool = False,
    data_files: Mapping[str, Path] | None = None,
    facts: Sequence[Any] | None = None,
) -> RebuildResult:
    """Lint, then embed (incrementally against `reuse`) and write the pack to `out`."""
    items, rejected, pending = select_for_pack(strategies, approved_only)
    if not items:
        raise ConfigError("no strategies left to pack (all rejected" + (" or pending" if approved_only else "")
                          + "); approve some with: edge-agent library review LIBRARY")
    if facts is None:  # the old pack's declared facts, when no domain file was given
        from edge_agent.facts import specs_from_manifest

        facts = specs_from_manifest(domain)
    flags = lint_strategies(items, rules) + fact_flags(items, facts)
    gate(flags, allow=allow_lint_flags)
    if reuse is not None and reuse.embedder_info.get("id") != embedder.id:
        log.info("embedder changed (%s -> %s): every strategy is embedded again",
                 reuse.embedder_info.get("id"), embedder.id)
    report = build_pack(out, items, embedder, embedder_dir=embedder_dir, domain=domain, settings=settings,
                        build={"tool": "pack rebuild", **dict(build or {})}, reuse=reuse, force=force,
                        data_files=data_files)
    log.info("rebuilt %s: %d strategies, %d embedded, %d reused", out, report.strategies, report.embedded,
             report.reused)
    return RebuildResult(report=report, embedder_id=embedder.id, dropped_rejected=rejected,
                         dropped_pending=pending, flags=flags)
