"""`edge-agent distill`: build a strategy library with a teacher, resume it, or estimate its cost.

A thin click layer over `distill.builder.rundir` and `distill.builder.loop`; progress is drawn with rich on a
terminal (calls, tokens, cost and cache hits live), and `--json` prints the run report instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from edge_agent.cli import LazyGroup
from edge_agent.domain import load_domain

from .config import settings_from_domain

__all__ = ["distill_group"]


def _floats(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def _names(text: str | None) -> tuple[str, ...] | None:
    names = tuple(x.strip() for x in (text or "").split(",") if x.strip())
    return names or None


def _ints(text: str | None) -> tuple[int, ...] | None:
    values = _floats(text)
    return tuple(int(v) for v in values) if values else None


def _execute(run_dir: Path, as_json: bool, no_progress: bool, loop: Mapping[str, Any], budget: Mapping[str, Any],
             teacher: Mapping[str, Any] | None = None) -> None:
    from edge_agent.cli import runtime_config

    from .builder.loop import run_build
    from .builder.progress import Progress
    from .builder.rundir import open_build

    show = not as_json and not no_progress
    progress = Progress(enabled=show and sys.stderr.isatty(), lines=show)
    build = open_build(run_dir, loop=loop, budget=budget, teacher=teacher, on_event=progress,
                       runtime=runtime_config())
    progress.build = build

    async def main() -> dict[str, Any]:
        try:
            return await run_build(build)
        finally:
            build.close()

    try:
        with progress:
            report = asyncio.run(main())
    except KeyboardInterrupt:
        click.secho(f"interrupted; finished work is saved. Continue with: edge-agent distill resume {run_dir}",
                    fg="yellow", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _summary(report)
    if report["status"] != "finished":
        click.secho(f"stopped: {report['reason']}", fg="yellow", err=True)
        sys.exit(3)


def _summary(report: Mapping[str, Any]) -> None:
    click.echo(f"run {report['run_id']}: {report['status']}, {report['strategies']} strategies")
    for s in report["stages"]:
        click.echo(f"  stage {s['stage']} (p={s['p_teacher']}): {s['rollouts']} rollouts, {s['ok']}/{s['scenarios']} "
                   f"scenarios ok, first score {s['mean_first_score']}, best {s['mean_best_score']}, "
                   f"{len(s['generated'])} situations generated")
    click.echo(f"{'model':28} {'calls':>7} {'prompt tok':>11} {'compl tok':>10} {'cost $':>9} {'cache hits':>10}")
    for model, u in report["usage"]["by_model"].items():
        click.echo(f"{model[:28]:28} {u['calls']:7} {u['prompt_tokens']:11} {u['completion_tokens']:10} "
                   f"{u['cost']:9.4f} {u['cache_hits']:10}")
    if report["unpriced_models"]:
        click.echo(f"(no price set for {', '.join(report['unpriced_models'])}; cost counted as 0)")
    cache = report.get("cache", {})
    for row in cache.get("by_teacher", []):
        if row["cache_hits"]:
            runs = f" (paid by run {', '.join(row['cached_from_runs'])})" if row["cached_from_runs"] else ""
            click.echo(f"{row['cache_hits']} answers from the cache for {row['teacher']}{runs}; "
                       f"{row['paid_calls']} paid calls")
    q = report.get("quality")
    if q:
        why = ", ".join(f"{n} {k}" for k, n in q["reasons"].items())
        click.echo(f"kept {q['kept']} strategies; rejected {q['rejected']}" + (f" ({why})" if why else "")
                   + f"; minimum score {q['min_score']}")
        if q["warning"]:
            click.secho(f"warning: {q['warning']}", fg="yellow", err=True)
    if report.get("pack"):
        click.echo(f"library: {Path(report['pack']).parent / 'library' / 'library.jsonl'}")
        click.echo(f"pack:    {report['pack']}   try: edge-agent chat --pack {report['pack']}")


_LOOP_OPTIONS = [
    click.option("--stages", default=None, help="Teacher probability per stage, e.g. 1.0,0.6,0.3."),
    click.option("--cut-turns", default=None, help="Cut conversations after these customer turns, e.g. 1,2,3,4."),
    click.option("--rounds", type=click.IntRange(1, 20), default=None, help="Improvement rounds per scenario (max)."),
    click.option("--personas", type=click.IntRange(1), default=None, help="Use N personas per situation (seeded)."),
    click.option("--intents", default=None, help="Only these intent ids, comma-separated, e.g. refund,cancel."),
    click.option("--customers", type=click.IntRange(1), default=None,
                 help="At most N simulated customers per stage, spread over the situations (a quick first trial)."),
    click.option("--scenarios", type=click.IntRange(1), default=None, help="At most N scenarios per stage."),
    click.option("--max-turns", type=click.IntRange(1, 40), default=None, help="Customer turn cap per rollout."),
    click.option("--min-score", type=click.IntRange(1, 5), default=None,
                 help="Reject strategies whose best judge score is below this (default 2)."),
    click.option("--seed", type=int, default=None),
]
_RUN_OPTIONS = [
    click.option("--concurrency", type=click.IntRange(1, 256), default=None, help="Teacher calls in flight."),
    click.option("--timeout-s", type=click.FloatRange(min=0.1), default=None,
                 help="Per-call timeout for the teacher (and roles that inherit it); raise it for slow local servers."),
    click.option("--max-calls", type=click.IntRange(0), default=None, help="Stop after N paid calls."),
    click.option("--max-tokens", "max_total_tokens", type=click.IntRange(0), default=None,
                 help="Stop after N paid tokens."),
    click.option("--max-cost", type=click.FloatRange(0), default=None, help="Stop after this many US dollars."),
    click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON."),
    click.option("--no-progress", is_flag=True, help="No progress bars."),
]


def _apply(options: list[Any]) -> Any:
    def wrap(fn: Any) -> Any:
        for opt in reversed(options):
            fn = opt(fn)
        return fn
    return wrap


def _loop_overrides(kw: Mapping[str, Any]) -> dict[str, Any]:
    return {"stages": _floats(kw.get("stages")), "cut_turns": _ints(kw.get("cut_turns")), "rounds": kw.get("rounds"),
            "personas": kw.get("personas"), "scenarios_per_stage": kw.get("scenarios"),
            "intents": _names(kw.get("intents")), "max_customers": kw.get("customers"),
            "max_customer_turns": kw.get("max_turns"), "seed": kw.get("seed"), "min_score": kw.get("min_score"),
            "concurrency": kw.get("concurrency")}


def _budget_overrides(kw: Mapping[str, Any]) -> dict[str, Any]:
    return {"max_calls": kw.get("max_calls"), "max_tokens": kw.get("max_total_tokens"), "max_cost": kw.get("max_cost")}


@click.group("distill", cls=LazyGroup, lazy={"derive-compact": "distill.tuning.cli:derive_compact_command",
                                                 "digest": "distill.digest.cli:digest_command"})
def distill_group() -> None:
    """Build a strategy library with a teacher model (any OpenAI-compatible endpoint).

    \b
    Examples:
      edge-agent distill estimate --domain distill/domains/airline.toml --teacher-model gpt-4o
      edge-agent distill run --domain distill/domains/airline.toml --out runs/air \\
          --teacher-url http://127.0.0.1:8080/v1 --teacher-model local
      edge-agent distill resume runs/air
    """


@distill_group.command("run")
@click.option("--domain", "domain_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory (journal, library, report and pack go here).")
@click.option("--teacher-url", envvar="EDGE_AGENT_TEACHER_URL", show_envvar=True, default=None,
              help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1.")
@click.option("--teacher-model", envvar="EDGE_AGENT_TEACHER_MODEL", show_envvar=True, default=None)
@click.option("--api-key-env", default=None, help="Name of the environment variable holding the API key.")
@click.option("--teacher-id", default=None,
              help="Your name for the model behind the endpoint (part of the cache key; change it when you swap it).")
@click.option("--json-mode", type=click.Choice(["off", "object", "schema", "grammar"]), default=None,
              help="How JSON is requested: object (json_object), schema (json_schema), grammar (llama.cpp "
                   "schema-constrained), off (prompt only).")
@click.option("--student-max-tokens", type=click.IntRange(1, 4096), default=None, help="Student reply cap.")
@click.option("--student", default="", help="Student: registry name or GGUF path (default: the registry default).")
@click.option("--embedder", default="", help="Exported ONNX embedder directory, or 'hash' for a quick test.")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Call cache (SQLite; default: $EDGE_AGENT_HOME/distill/cache.sqlite).")
@_apply(_LOOP_OPTIONS + _RUN_OPTIONS)
def run_command(domain_path: Path, run_dir: Path, teacher_url: str | None, teacher_model: str | None,
                api_key_env: str | None, teacher_id: str | None, json_mode: str | None, student_max_tokens: int | None, student: str,
                embedder: str, cache: Path | None, **kw: Any) -> None:
    """Start a build. Ctrl-C or a crash loses nothing: continue with `distill resume RUN_DIR`.

    \b
    Example:
      export OPENAI_API_KEY=...
      edge-agent distill run --domain desk.toml --out runs/desk --teacher-url https://api.example/v1 \\
          --teacher-model big-model --api-key-env OPENAI_API_KEY --max-cost 5
    """
    from .builder.rundir import init_run

    init_run(run_dir, domain_path, teacher={"base_url": teacher_url, "model": teacher_model, "api_key_env": api_key_env,
                                            "json_mode": json_mode, "teacher_id": teacher_id},
             loop={**_loop_overrides(kw), "student_max_tokens": student_max_tokens},
             teacher_timeout=kw.get("timeout_s"), budget=_budget_overrides(kw), student=student, embedder=embedder, cache=cache)
    _execute(run_dir, kw["as_json"], kw["no_progress"], {}, {})


@distill_group.command("resume")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--teacher-url", default=None, help="New OpenAI-compatible base URL for the teacher (saved in the run).")
@click.option("--teacher-model", default=None, help="New teacher model name (saved in the run).")
@click.option("--api-key-env", default=None, help="Name of the environment variable holding the API key.")
@click.option("--teacher-id", default=None, help="Your name for the model behind the endpoint (see run).")
@_apply(_RUN_OPTIONS)
def resume_command(run_dir: Path, teacher_url: str | None, teacher_model: str | None, api_key_env: str | None,
                   teacher_id: str | None, **kw: Any) -> None:
    """Continue a stopped or crashed build; finished work and paid calls are not repeated.

    Endpoint flags (--teacher-url, --teacher-model, --api-key-env, --teacher-id) are saved in the run's
    config.json, so a later resume keeps them. Answers cached from another teacher are not reused.

    \b
    Examples:
      edge-agent distill resume runs/desk --max-cost 10
      edge-agent distill resume runs/desk --teacher-url http://127.0.0.1:8081/v1 --timeout-s 300
    """
    from .builder.rundir import update_endpoint

    changed = update_endpoint(run_dir, {"base_url": teacher_url, "model": teacher_model, "api_key_env": api_key_env,
                                        "teacher_id": teacher_id})
    if changed:
        click.echo(f"teacher endpoint updated in {run_dir / 'config.json'}: "
                   + ", ".join(f"{k} = {v}" for k, v in changed.items()), err=True)
    loop = {"concurrency": kw.get("concurrency")}
    _execute(run_dir, kw["as_json"], kw["no_progress"], loop, _budget_overrides(kw), {"timeout_s": kw.get("timeout_s")})


@distill_group.command("estimate")
@click.option("--domain", "domain_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--teacher-model", envvar="EDGE_AGENT_TEACHER_MODEL", default=None,
              help="Model name (for prices; default: [roles.teacher] model in the domain file).")
@click.option("--json", "as_json", is_flag=True)
@_apply(_LOOP_OPTIONS)
def estimate_command(domain_path: Path, teacher_model: str | None, as_json: bool, **kw: Any) -> None:
    """Print expected and worst-case calls, tokens and cost before a run.

    \b
    Example:
      edge-agent distill estimate --domain distill/domains/airline.toml --teacher-model gpt-4o --personas 8
    """
    from .builder.estimate import budget_warnings, estimate_run, format_estimate

    domain = load_domain(domain_path)
    settings = settings_from_domain(domain.settings, domain_path.name)
    own = settings.roles.get("teacher")
    teacher: dict[str, Any] = {"model": teacher_model}
    if not own or not own.base_url:
        teacher["base_url"] = "http://127.0.0.1/v1"  # not contacted; only the arithmetic needs a role
    if not teacher_model and not (own and own.model):
        raise click.UsageError(f"pass --teacher-model, or set model in {domain_path.name}'s [roles.teacher] "
                               "(prices are looked up by model name)")
    settings = settings.with_overrides(teacher=teacher, loop=_loop_overrides(kw))
    expected, worst = estimate_run(domain, settings), estimate_run(domain, settings, worst_case=True)
    warnings = budget_warnings(expected, worst, settings.budget, set(settings.prices))
    if as_json:
        click.echo(json.dumps({"teacher_model": settings.endpoint("teacher").model,
                               "expected": [r.to_json() for r in expected], "max": [r.to_json() for r in worst],
                               "budget": settings.budget.model_dump(), "warnings": warnings}, indent=2))
    else:
        click.echo(format_estimate(expected, worst, set(settings.prices)))
        for line in warnings:
            click.secho(line, fg="yellow", err=True)

