"""`edge-agent library lint`: policy rules, prompt-injection shapes and an optional LLM audit."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from edge_agent.cli import demo_dir
from edge_agent.domain import load_domain
from edge_agent.errors import ConfigError
from edge_agent.lint import fact_flags

from .lint import Flag, blocking, lint_strategies, rules_from_manifest
from .store import open_library

__all__ = ["lint_command"]


def _print_flags(flags: list[Flag], verbose: bool) -> None:
    notices: dict[str, list[str]] = defaultdict(list)
    for f in flags:
        if f.severity == "notice":
            notices[f.rule].append(f.strategy_id)
            continue
        colour = "red" if f.severity == "error" else "yellow"
        click.secho(f"{f.severity:7} {f.strategy_id} {f.field}: [{f.rule}] {f.message}", fg=colour)
        if f.excerpt:
            click.echo(f"        \"{f.excerpt}\"")
    for rule, ids in notices.items():
        shown = ids if verbose else ids[:5]
        click.echo(f"notice  required step '{rule}' not mentioned in {len(ids)} strategies: {', '.join(shown)}"
                   + ("" if len(shown) == len(ids) else " ... (--verbose lists all)"))


def _embedder(lib: Any, embedder_dir: Path | None, quiet: bool) -> Any:
    """The embedder for the by-meaning check: --embedder, else the pack's own, else the default export."""
    from edge_agent.cli import default_embedder_dir
    from edge_agent.embedder import OnnxEmbedder

    if embedder_dir is None and lib.pack is not None:
        return lib.pack.open_embedder()
    directory = embedder_dir or default_embedder_dir()
    if embedder_dir is None and not (directory / "model.onnx").is_file():
        if quiet:  # --json says so in its "by_meaning" field
            return None
        click.secho(f"note: no embedder at {directory}, so rules were checked by pattern only; run edge-agent "
                    "models export-embedder or pass --embedder DIR", fg="yellow", err=True)
        return None
    return OnnxEmbedder(directory)


def _content_flags(strategies: Any) -> list[Flag]:
    """Distilled entries that are garbage (placeholder or meta text, a customer who speaks as the agent)."""
    from .quality import problems

    return [Flag(s.id, "*", "content", "content", "warning", "", reason)
            for s in strategies if s.source == "distilled" and s.status != "rejected"
            for reason in problems(s, min_score=1)]


@click.command("lint")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--domain", type=click.Path(path_type=Path), default=None,
              help="Domain TOML with [[rules]] (default: the pack's rules, or the demo domain for a library).")
@click.option("--llm-url", default=None, help="Also audit each strategy with an OpenAI-compatible endpoint.")
@click.option("--llm-model", default=None, help="Model name for --llm-url.")
@click.option("--llm-key-env", default="", help="Environment variable holding the API key (none for local).")
@click.option("--verbose", is_flag=True, help="List every strategy behind each notice.")
@click.option("--embedder", "embedder_dir", type=click.Path(path_type=Path), default=None,
              help="ONNX embedder for the by-meaning check against the rules' examples (default: the pack's, "
                   "else the one made by `models export-embedder`).")
@click.option("--json", "as_json", is_flag=True)
def lint_command(source: Path, domain: Path | None, llm_url: str | None, llm_model: str | None, llm_key_env: str,
                 verbose: bool, embedder_dir: Path | None, as_json: bool) -> None:
    """Check strategies against policy rules and for prompt-injection shapes; exit 1 on blocking flags.

    Errors and warnings block `pack rebuild` unless --allow-lint-flags is given; notices (a
    required step not mentioned) are advice only.

    \b
    Examples:
      edge-agent library lint lib.jsonl --domain my-domain.toml
      edge-agent library lint ~/.edge-agent/packs/demo --json
      edge-agent library lint lib.jsonl --llm-url http://127.0.0.1:8080/v1 --llm-model local
    """
    lib = open_library(source)
    if domain is not None or lib.pack is None:
        dom = load_domain(domain or demo_dir() / "domain.toml")
        rules, policy, rules_from = list(dom.rules), dom.policy, dom.source
        specs = list(dom.facts)
    else:
        block = lib.pack.manifest.domain
        # a pack built with a policy digest records the full policy too: audit against that
        policy = str(block.get("policy") or block.get("system_prompt", ""))
        rules, rules_from = rules_from_manifest(block), "pack manifest"
        from edge_agent.facts import specs_from_manifest

        specs = specs_from_manifest(block)
    if not lib.strategies:
        raise ConfigError(f"{lib.path} holds no strategies, so there is nothing to lint; add strategies with: "
                          "edge-agent library add")
    embedder = _embedder(lib, embedder_dir, quiet=as_json) if any(r.examples for r in rules) else None
    flags = lint_strategies(lib.strategies, rules, embedder=embedder) + _content_flags(lib.strategies)
    flags += fact_flags(lib.strategies, specs)
    if llm_url:
        from .llm_check import llm_check, openai_checker

        if not llm_model:
            raise click.UsageError("--llm-url needs --llm-model")
        flags += llm_check(lib.strategies, openai_checker(llm_url, llm_model, llm_key_env), policy)
    stop = blocking(flags)
    if as_json:
        click.echo(json.dumps({"source": str(lib.path), "rules_from": rules_from, "rules": len(rules),
                               "checked": sum(s.status != "rejected" for s in lib.strategies), "by_meaning": embedder is not None,
                               "blocking": len(stop), "flags": [f.to_json() for f in flags]},
                              ensure_ascii=False, indent=2))
    else:
        _print_flags(flags, verbose)
        click.echo(f"{len(stop)} blocking flag(s) in {len({f.strategy_id for f in stop})} of "
                   f"{len(lib.strategies)} strategies ({len(rules)} rules from {rules_from})")
    if stop:
        click.get_current_context().exit(1)
