"""`edge-agent pack build` and `pack verify` as library calls: lint-gated builds, and a verify that
loads what `chat` loads.

A build lints the library (rules by pattern and, with the embedder, by their examples' meaning),
then embeds and writes the pack; it also reports how much of the student's context window the
system prompt takes. Verify checks every file and hash, opens the bundled embedder and embeds one
text, and lists manifest fields this version does not know (see docs/hardening.md for the rule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .domain import Domain, load_domain
from .embedder import OnnxEmbedder
from .errors import ConfigError, ModelError, PackError
from .library import read_library
from .lint import fact_flags, gate, lint_strategies
from .pack import BuildReport, PackSettings, build_pack, load_pack, repair_index

__all__ = ["KNOWN_MANIFEST_FIELDS", "MAX_PROMPT_SHARE", "PromptShare", "VerifyReport", "build_from_files",
           "prompt_share", "verify_pack"]

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
        from .models import resolve_model

        spec = resolve_model(model)
        from llama_cpp import Llama
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):  # a vocabulary-only load still warns about n_ctx
            vocab = Llama(model_path=str(spec.path), vocab_only=True, verbose=False)
        tokens = len(vocab.tokenize(system_prompt.encode("utf-8"), add_bos=False, special=False))
        return PromptShare(tokens + 8, int(spec.n_ctx), spec.name, estimated=False)  # + role markers
    except (ModelError, ImportError, ValueError, OSError) as exc:
        log.info("prompt share estimated: %s", exc)
        return PromptShare(len(system_prompt.encode("utf-8")) // 4 + 8, 2048, str(model or "the student"), True)


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
    gate(lint_strategies(strategies, list(dom.rules), embedder=embedder) + fact_flags(strategies, dom.facts),
         allow=allow_lint_flags)
    settings = PackSettings(retrieval=dom.settings.get("retrieval", {}), prompting=dom.settings.get("prompting", {}),
                            generation=dom.settings.get("generation", {}))
    report = build_pack(out, strategies, embedder, embedder_dir=embedder_dir, domain=dom.to_manifest(),
                        settings=settings, build={"library": library.name, "domain": dom.name},
                        approved_only=approved_only, force=force, data_files=dom.data_files())
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
