"""The one way to make a pack (`make_pack`: pick by status, lint, embed, write), `pack build` on top
of it, and a `pack verify` that loads what `chat` loads.

`pack build`, `pack rebuild` and the distill run all call `make_pack` with a `PackSource` (the
domain's manifest block, settings, rules and facts, or an old pack's). `pack build` also reports
how much of the student's context window the system prompt takes. Verify checks every file, hash
and setting, opens the bundled embedder and embeds one text, and lists manifest fields this version
does not know (see docs/hardening.md for the rule).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..domain import Domain, load_domain
from ..embedder import Embedder, OnnxEmbedder
from ..errors import ConfigError, ModelError, PackError
from ..facts import FactSpec, specs_from_manifest
from ..library import Strategy, read_library
from ..lint import Flag, blocking, fact_flags, gate, lint_strategies
from .manifest import PackSettings
from .read import Pack, load_pack
from .write import BuildReport, build_pack, repair_index, select_for_pack
from ..policy import PolicyRule

__all__ = ["KNOWN_MANIFEST_FIELDS", "MAX_PROMPT_SHARE", "OnFlags", "PackSource", "PackResult", "PromptShare",
           "VerifyReport", "build_from_files", "make_pack", "prompt_share", "verify_pack"]

log = logging.getLogger(__name__)

# A build warns when the system prompt alone takes more than this share of the student's window:
# every turn prefills it, and what is left must hold the conversation, the guidance and the reply.
MAX_PROMPT_SHARE = 0.25
# Top-level manifest fields of format version 1. Readers ignore others (a newer minor writer may add
# fields that old readers can skip); `pack verify` lists them and `--strict` refuses them.
KNOWN_MANIFEST_FIELDS = frozenset({"format", "format_version", "embedder", "counts", "index", "files", "domain",
                                   "settings", "build", "tuning"})


@dataclass(frozen=True)
class PromptShare:
    tokens: int
    n_ctx: int
    model: str
    estimated: bool  # True when the student's tokenizer was not available (bytes / 4)

    @property
    def share(self) -> float:
        return self.tokens / self.n_ctx if self.n_ctx else 1.0

    def warning(self, limit: float = MAX_PROMPT_SHARE) -> str | None:
        if self.share <= limit:
            return None
        approx = "~" if self.estimated else ""
        return (f"the system prompt is {approx}{self.tokens} tokens, {self.share:.0%} of {self.model}'s "
                f"{self.n_ctx}-token context window (more than {limit:.0%}); shorten the domain's [policy] "
                "text or run with a larger --n-ctx")


def prompt_share(system_prompt: str, model: str | None = None) -> PromptShare:
    """Tokens the system prompt takes in the student's window, with the student's own tokenizer
    (a vocabulary-only load); estimated from its length when the model is not installed."""
    try:
        from ..models import resolve_model

        spec = resolve_model(model)
        from ..student import load_vocabulary

        vocab = load_vocabulary(spec.path)
        tokens = len(vocab.tokenize(system_prompt.encode("utf-8"), add_bos=False, special=False))
        return PromptShare(tokens + 8, int(spec.n_ctx), spec.name, estimated=False)  # + role markers
    except (ModelError, ImportError, ValueError, OSError) as exc:
        log.info("prompt share estimated: %s", exc)
        return PromptShare(len(system_prompt.encode("utf-8")) // 4 + 8, 2048, str(model or "the student"), True)


@dataclass(frozen=True)
class PackSource:
    """What a pack carries besides its strategies: the manifest's domain block, the settings, the
    policy rules and facts that lint checks, and the fact source's data files (name in pack -> file)."""

    domain: Mapping[str, Any]
    settings: PackSettings
    rules: Sequence[PolicyRule] = ()
    facts: Sequence[FactSpec] = ()
    data_files: Mapping[str, Path] = field(default_factory=dict)

    @classmethod
    def from_domain(cls, domain: Domain) -> PackSource:
        return cls(domain.to_manifest(), domain.pack_settings, tuple(domain.rules), tuple(domain.facts),
                   domain.data_files())

    @classmethod
    def from_pack(cls, pack: Pack) -> PackSource:
        """An old pack's own domain block, settings, rules, facts and data files (a rebuild without --domain)."""
        block = pack.manifest.domain
        return cls(dict(block), pack.settings, tuple(pack.rules), tuple(specs_from_manifest(block)),
                   {rel: pack.path / rel for rel in pack.manifest.data_files()})


# What make_pack does with strategies lint flags: refuse to build, build anyway, or leave them out.
OnFlags = Literal["refuse", "allow", "leave_out"]


@dataclass(frozen=True)
class PackResult:
    report: BuildReport | None  # None only with on_flags="leave_out" when nothing was left to pack
    flags: list[Flag]  # every lint flag on the strategies considered
    left_out: list[str]  # ids left out for blocking flags (on_flags="leave_out")
    dropped_rejected: int
    dropped_pending: int


def make_pack(out: Path, strategies: Sequence[Strategy], embedder: Embedder, source: PackSource, *,
              embedder_dir: Path | None, approved_only: bool = False, on_flags: OnFlags = "refuse",
              lint_embedder: Embedder | None = None, build: Mapping[str, Any] | None = None,
              reuse: Pack | None = None, force: bool = False) -> PackResult:
    """Select by status, lint (rules by pattern, by meaning with `lint_embedder`, and facts), then
    embed (reusing `reuse`'s vectors where unchanged) and write the pack to `out`."""
    items, rejected, pending = select_for_pack(strategies, approved_only)
    if not items and on_flags != "leave_out":
        raise ConfigError("no strategies to pack (" + ("none approved; approve some with: edge-agent library "
                          "review LIBRARY, or drop --approved-only" if approved_only else "none left once rejected "
                          "ones are dropped; add or approve strategies in the library") + ")")
    flags = lint_strategies(items, list(source.rules), embedder=lint_embedder) + fact_flags(items, source.facts)
    left_out: list[str] = []
    if on_flags == "leave_out":
        left_out = sorted({f.strategy_id for f in blocking(flags)})
        if left_out:
            log.warning("lint flagged %d strategies (%s); they are in the library but not in the pack: review "
                        "them with edge-agent library lint, then edge-agent pack rebuild", len(left_out),
                        ", ".join(left_out[:5]))
        items = [s for s in items if s.id not in set(left_out)]
        if not items:
            return PackResult(None, flags, left_out, rejected, pending)
    else:
        gate(flags, allow=on_flags == "allow")
    report = build_pack(out, items, embedder, embedder_dir=embedder_dir, domain=source.domain,
                        settings=source.settings, build=build, reuse=reuse, force=force,
                        data_files=source.data_files)
    return PackResult(report, flags, left_out, rejected, pending)


@dataclass(frozen=True)
class BuildOutcome:
    report: BuildReport
    warnings: list[str] = field(default_factory=list)
    share: PromptShare | None = None


def build_from_files(library: Path, domain: Path, out: Path, embedder_dir: Path, *, approved_only: bool = False,
                     allow_lint_flags: bool = False, force: bool = False, model: str | None = None) -> BuildOutcome:
    """Lint-gated build of `library` with `domain`'s prompt, rules and settings into `out`."""
    dom = load_domain(domain)
    if approved_only and dom.digest and dom.digest_info.get("status") == "pending":
        raise ConfigError(f"--approved-only, but the policy digest in {dom.digest_info.get('file')} is pending; "
                          f"approve it with: edge-agent library review {dom.digest_info.get('file')}")
    if not (embedder_dir / "model.onnx").is_file():
        raise ModelError(f"no exported embedder at {embedder_dir}; run: edge-agent models export-embedder "
                         "(needs the distill extra) or pass --embedder DIR")
    strategies = read_library(library)
    embedder = OnnxEmbedder(embedder_dir)
    result = make_pack(out, strategies, embedder, PackSource.from_domain(dom), embedder_dir=embedder_dir,
                       approved_only=approved_only, on_flags="allow" if allow_lint_flags else "refuse",
                       lint_embedder=embedder, build={"library": library.name, "domain": dom.name}, force=force)
    report = result.report
    if report is None:  # only on_flags="leave_out" writes no pack
        raise PackError(f"no pack written to {out}")
    share = prompt_share(dom.system_prompt(), model)
    warning = share.warning()
    return BuildOutcome(report, [*digest_warnings(dom), *([warning] if warning else [])], share)


def digest_warnings(dom: Domain) -> list[str]:
    """What a reviewer should hear about the policy digest the student will see."""
    info, name = dom.digest_info, dom.digest_info.get("file", "")
    out = []
    if dom.digest and info.get("status") == "pending":
        out.append(f"the policy digest in {name} is pending review; approve or edit it with: "
                   f"edge-agent library review {name}")
    if info.get("stale"):
        out.append(f"the policy digest in {name} was drafted from an earlier [policy] text; review it again or "
                   "redraft it with: edge-agent distill digest --force")
    return out


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    strategies: int
    dim: int
    unknown_fields: list[str]
    repaired: bool


def verify_pack(root: Path, *, repair: bool = False, strict: bool = False) -> VerifyReport:
    """Everything `load_pack` checks, plus: the bundled embedder opens and embeds to the pack's dim."""
    repaired = False
    try:
        loaded = load_pack(root)
    except PackError:
        if not repair:
            raise
        repair_index(root)
        loaded = load_pack(root)
        repaired = True
    unknown = sorted(set(loaded.manifest) - KNOWN_MANIFEST_FIELDS)
    if unknown and strict:
        raise PackError(f"pack {root}: manifest has field(s) {', '.join(unknown)} that edge-agent does not know; "
                        "upgrade edge-agent, or drop --strict to ignore them")
    try:
        vector = loaded.open_embedder().embed(["pack verify: can this embedder embed a sentence?"])
    except ModelError as exc:
        raise PackError(f"pack {root}: the bundled embedder does not load ({exc})") from None
    except Exception as exc:  # onnxruntime raises its own types at run time; report any as a pack problem
        raise PackError(f"pack {root}: the bundled embedder fails to embed ({type(exc).__name__}: "
                        f"{str(exc)[:120]}); rebuild it with: edge-agent pack build") from None
    if vector.shape != (1, loaded.dim) or not np.all(np.isfinite(vector)):
        raise PackError(f"pack {root}: the bundled embedder returns shape {tuple(vector.shape)} (expected "
                        f"(1, {loaded.dim})) or non-finite values; rebuild it with: edge-agent pack build")
    return VerifyReport(loaded.path, len(loaded.strategies), loaded.dim, unknown, repaired)


def to_json(outcome: BuildOutcome) -> dict[str, Any]:
    r = outcome.report
    out: dict[str, Any] = {"path": str(r.path), "strategies": r.strategies, "embedded": r.embedded,
                           "reused": r.reused, "warnings": outcome.warnings}
    if outcome.share is not None:
        out["system_prompt"] = {"tokens": outcome.share.tokens, "n_ctx": outcome.share.n_ctx,
                                "share": round(outcome.share.share, 3), "estimated": outcome.share.estimated}
    return out
