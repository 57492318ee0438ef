"""CLI for tuning: `edge-agent tune` and the `derive-compact` library command (thin click layer)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from edge_agent.cli import model_option, pack_option
from edge_agent.errors import ConfigError
from edge_agent.files import home_dir

__all__ = ["derive_compact_command", "tune_command"]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@click.command("tune")
@pack_option
@click.option("--dev", "dev_path", type=click.Path(path_type=Path, exists=True), default=None,
              help="JSONL of conversations ('scenario' or 'messages') with the teacher's reply ('teacher_reply').")
@click.option("--suite", "suite_paths", type=click.Path(path_type=Path, exists=True), multiple=True,
              help="Conversation suite(s) (`edge-agent test` files): choose the grounded mode's settings by them.")
@click.option("--stage", type=int, default=None, help="Use only rows with this 'stage' value.")
@click.option("--limit", type=int, default=0, help="Use at most N conversations (0 = all).")
@model_option
@click.option("--modes", default=",".join(("plain", "compact", "system", "exemplar", "demo", "adapt")),
              show_default=True, help="Comma-separated rendering modes to compare; 'plain' is always the base.")
@click.option("--repeat-penalty", "repeat_penalties", default="",
              help="Comma-separated values to try, e.g. 1.0,1.1.")
@click.option("--max-tokens", "max_tokens", default="", help="Comma-separated reply caps to try, e.g. 120,160.")
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), default=None,
              help="SQLite call cache for student generations (default: <home>/distill/cache.sqlite, shared "
                   "with distill).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="Where to write the JSON report (a .txt table is written beside it).")
@click.option("--write/--no-write", default=True, show_default=True, help="Write the best settings into the pack.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def tune_command(
    pack_path: Path | None,
    dev_path: Path | None,
    suite_paths: tuple[Path, ...],
    stage: int | None,
    limit: int,
    model: str | None,
    modes: str,
    repeat_penalties: str,
    max_tokens: str,
    cache_path: Path | None,
    report_path: Path | None,
    write: bool,
    as_json: bool,
) -> None:
    """Compare rendering modes and decoding settings on recorded teacher replies; keep the best.

    Runs offline: the student answers every development conversation in every mode, replies are
    scored by MiniLM cosine to the teacher's reply, and the best mode whose policy-violation rate
    is no higher than the base student's is written into the pack manifest.

    \b
    Examples:
      edge-agent tune --dev dev.jsonl
      edge-agent tune --pack ./mypack --dev dev.jsonl --modes plain,compact,adapt --repeat-penalty 1.0,1.1
      edge-agent tune --suite tests/conversations/demo.toml     # may the student write its own replies?
    """
    from edge_agent.bundle import resolve_pack
    from edge_agent.cli import default_pack, runtime_config
    from edge_agent.pack import load_pack, update_settings

    pack_path = resolve_pack(pack_path) or default_pack()  # a directory, or an installed pack's name
    if suite_paths:
        _tune_suites(pack_path, model, suite_paths, report_path, write, as_json)
        return
    if dev_path is None:
        raise click.UsageError("give --dev FILE (recorded teacher replies) or --suite FILE (conversation tests)")

    from ..roles.cache import default_cache_path
    from .data import read_dev_file
    from .run import build_tuning, write_report
    from .tune import candidate_grid, tune

    pack = load_pack(pack_path)
    items = read_dev_file(dev_path, stage=stage)
    if limit:
        items = items[:limit]
    gens: list[dict[str, Any]] = [{}]
    if repeat_penalties:
        gens = [{**g, "repeat_penalty": p} for g in gens for p in _floats(repeat_penalties)]
    if max_tokens:
        gens = [{**g, "max_tokens": n} for g in gens for n in _ints(max_tokens)]
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    candidates = candidate_grid(mode_list, gens)
    setup = build_tuning(pack, model, cache_path or default_cache_path(), runtime=runtime_config())
    with click.progressbar(length=len(items) * len(candidates), label="tuning", file=sys.stderr) as bar:
        result = tune(setup.factory, items, candidates, setup.scorer, setup.rules, progress=bar.update)
    out = report_path or home_dir() / "reports" / f"tune-{pack.path.name}.json"
    misses, hits = setup.student.ledger.count(setup.student.name)
    table = write_report(
        result,
        out,
        extra={
            "pack": str(pack.path),
            "dev": str(dev_path),
            "model": setup.model_name,
            "cache_hits": hits,
            "cache_misses": misses,
        },
    )
    if write:
        best = result.best.candidate
        generation = {**pack.settings.table("generation"), **dict(best.generation)}
        update_settings(
            pack.path,
            prompting={"mode": best.mode, "params": dict(best.params)},
            generation=generation,
            tuning={
                "best": result.best.name,
                "n_items": result.n,
                "report": out.name,
                "model": setup.model_name,
            },
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(table)
        click.echo(f"\nbest: {result.best.name}" + (f" (written to {pack.path})" if write else ""))
        click.echo(f"report: {out}")


def _tune_suites(pack_path: Path, model: str | None, suite_paths: tuple[Path, ...], report_path: Path | None,
                 write: bool, as_json: bool) -> None:
    """Grounded mode with and without the student's gated drafts, scored by conversation suites."""
    from edge_agent.agent import Agent
    from edge_agent.convtest import SuiteError, load_suite
    from edge_agent.files import write_json_atomic
    from edge_agent.pack import load_pack, update_settings

    from .suites import format_suite_table, tune_by_suites

    try:
        suites = [load_suite(p) for p in suite_paths]
    except SuiteError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    pack = load_pack(pack_path)
    base = dict(pack.settings.prompting.params) if pack.settings.prompting.mode == "grounded" else {}
    student = Agent.from_pack(pack, model).student  # loaded once, shared by every candidate

    def make_agent(params: Any) -> Any:
        return Agent.from_pack(pack, student=student, prompting={"mode": "grounded", "params": {**base, **params}})

    scores = tune_by_suites(make_agent, suites)
    out = report_path or home_dir() / "reports" / f"tune-suites-{pack.path.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"pack": str(pack.path), "suites": [str(p) for p in suite_paths],
                            "scores": [s.to_json() for s in scores]})
    best = scores[0]
    if write:
        update_settings(pack.path, prompting={"mode": "grounded", "params": {**base, **best.candidate.params}},
                        tuning={"best": best.candidate.name, "by": "conversation suites", "rate": round(best.rate, 4),
                                "report": out.name})
    if as_json:
        click.echo(json.dumps([s.to_json() for s in scores], indent=2))
    else:
        click.echo(format_suite_table(scores))
        click.echo(f"\nbest: {best.candidate.name}" + (f" (written to {pack.path})" if write else ""))
        click.echo(f"report: {out}")


@click.command("derive-compact")
@click.argument("library", type=click.Path(path_type=Path, exists=True))
@click.option(
    "-o", "--out", type=click.Path(path_type=Path), default=None, help="Output JSONL (default: in place)."
)
@click.option("--overwrite", is_flag=True, help="Also replace compact forms that already exist.")
@click.option("--max-sentences", type=int, default=4, show_default=True)
@click.option("--max-tokens", type=int, default=80, show_default=True)
@click.option(
    "--endpoint", default=None, help="OpenAI-compatible base URL; without it the rule-based deriver is used."
)
@click.option("--model", "endpoint_model", default=None, help="Model name at the endpoint.")
@click.option(
    "--api-key-env", default="OPENAI_API_KEY", show_default=True, help="Variable holding the API key."
)
def derive_compact_command(
    library: Path,
    out: Path | None,
    overwrite: bool,
    max_sentences: int,
    max_tokens: int,
    endpoint: str | None,
    endpoint_model: str | None,
    api_key_env: str,
) -> None:
    """Fill the `compact` form of each strategy in a library file.

    \b
    Examples:
      edge-agent library derive-compact strategies.jsonl
      edge-agent library derive-compact strategies.jsonl --endpoint http://127.0.0.1:8080/v1 --model teacher
    """
    from edge_agent.library import read_library, write_library

    from ..config import Endpoint
    from ..roles.openai_chat import OpenAIChat
    from .compact import derive_compact, derive_compact_llm, fill_compact

    strategies = read_library(library)
    if endpoint:
        if not endpoint_model:
            raise click.ClickException(str(ConfigError("--endpoint needs --model NAME (the model to ask)")))
        # An unset key variable is fine for local servers (they ignore the key).
        chat = OpenAIChat(Endpoint(role="compact", base_url=endpoint, model=endpoint_model,
                                   api_key_env=api_key_env if os.environ.get(api_key_env) else ""))
        derive = lambda text: derive_compact_llm(text, chat, max_sentences, max_tokens)
    else:
        derive = lambda text: derive_compact(text, max_sentences, max_tokens)
    with click.progressbar(length=len(strategies), label="deriving", file=sys.stderr) as bar:
        filled, changed = fill_compact(strategies, derive, overwrite=overwrite, progress=bar.update)
    write_library(out or library, filled)
    click.echo(f"{changed} of {len(filled)} compact forms written to {out or library}")
