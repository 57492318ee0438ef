"""`edge-agent eval run|report`: a thin click layer over the evaluation runner and report.

Online runs reach the simulator, teacher and judge through OpenAI-compatible endpoints (cached in
the distill call cache, so a rerun costs nothing); `--replay` runs need no network at all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from edge_agent.cli import model_option, pack_option

__all__ = ["eval_group"]

DEFAULT_CONDITIONS = ("base", "pack")


@click.group("eval", context_settings={"help_option_names": ["-h", "--help"]})
def eval_group() -> None:
    """Compare the base student, a generic guideline, the pack, the teacher and a transferred pack.

    \b
    Examples:
      edge-agent eval run --replay conversations.jsonl --out eval-out
      edge-agent eval run --teacher-url http://127.0.0.1:8080/v1 --teacher-model local \\
          --record conversations.jsonl -c base -c pack -c teacher --out eval-out
      edge-agent eval report eval-out --baseline base
    """


class _Bar:
    """A rich progress display on stderr with one task per stage (silent when stderr is not a tty)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Callable[[str, int, int], None]:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self.progress.start()
        return self.update

    def update(self, stage: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _role_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for role, what in (("judge", "LLM judge"), ("simulator", "customer simulator"), ("teacher", "teacher")):
        fn = click.option(f"--{role}-model", default=None, help=f"Model name at the {what} endpoint.")(fn)
        fn = click.option(f"--{role}-url", default=None,
                          help=f"OpenAI-compatible base URL of the {what} (default: the teacher's; "
                               "the domain file's [roles] table is read first).")(fn)
    return fn


@eval_group.command("run")
@click.option("--domain", "domain_path", type=click.Path(path_type=Path), default=None,
              help="Domain TOML with personas, intents and policy rules (default: the demo domain).")
@pack_option
@click.option("-c", "--condition", "conditions", multiple=True, metavar="[NAME=]KIND[@MODEL]",
              help="base, guidelines, pack, teacher or transfer; repeat (default: base and pack).")
@model_option
@click.option("--transfer-model", default=None, help="Second student for the transfer condition.")
@click.option("--guideline", default=None, help="Text of the generic guideline (guidelines condition).")
@click.option("--replay", "replay_path", type=click.Path(path_type=Path), default=None,
              help="Replay the customer turns of a recording (offline; no simulator).")
@click.option("--record", "record_path", type=click.Path(path_type=Path), default=None,
              help="Online: write the reference conversations here for later --replay.")
@click.option("--context", type=click.Choice(["reference", "own"]), default="reference", show_default=True,
              help="Replay: continue the recorded conversation, or keep the student's own replies.")
@_role_options
@click.option("--api-key-env", default=None, help="Environment variable holding the endpoints' API key.")
@click.option("--json-mode", type=click.Choice(["off", "object", "schema", "grammar"]), default=None,
              help="How the judge is asked for JSON (default: the role's setting, else 'object').")
@click.option("--no-judge", is_flag=True, help="Skip both LLM judges (offline metric and policy checks only).")
@click.option("--no-turn-judge", is_flag=True, help="Skip the per-turn closeness judge.")
@click.option("--personas", type=click.IntRange(1), default=8, show_default=True, help="Simulated customers.")
@click.option("--trials", type=click.IntRange(1), default=1, show_default=True, help="Repeats per case (pass^k).")
@click.option("--turns", type=click.IntRange(1), default=3, show_default=True, help="Customer turns per conversation.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split", type=click.Choice(["all", "test", "build"]), default="all", show_default=True,
              help="Hold-out side of the persona x intent split (see --test-share).")
@click.option("--test-share", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--intent", "intents", multiple=True, help="Only these intents (repeat).")
@click.option("--exclude-intent", "exclude_intents", multiple=True, help="Hold out these intents (repeat).")
@click.option("--exclude-persona", "exclude_personas", multiple=True, metavar="KEY",
              help="Hold out a persona, e.g. demanding=True/emotion=angry/social_style=driver (repeat).")
@click.option("--student-max-tokens", type=click.IntRange(1), default=None, help="Reply cap for the students.")
@click.option("--max-tokens", "role_max_tokens", type=click.IntRange(1), default=None,
              help="Reply cap for simulator, teacher and judge (default: each role's).")
@click.option("--budget-calls", type=click.IntRange(0), default=None, help="Stop after this many paid calls.")
@click.option("--budget-tokens", type=click.IntRange(0), default=None, help="Stop after this many paid tokens.")
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), default=None,
              help="Call cache shared with distill (default: $EDGE_AGENT_HOME/distill/cache.sqlite).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the call cache.")
@click.option("--embedder", "embedder_dir", type=click.Path(path_type=Path), default=None,
              help="ONNX embedder for the offline metric (default: the pack's, else the exported one).")
@click.option("--baseline", default=None, help="Condition the others are compared to (default: the first).")
@click.option("--pass-level", type=click.IntRange(1, 5), default=4, show_default=True,
              help="Judge level a trial needs to pass (pass^k).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("eval-out"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run_command(**opts: Any) -> None:
    """Run conversations for each condition, judge them and write results.json and report.html.

    \b
    Examples:
      edge-agent eval run --replay conversations.jsonl          # offline, free
      edge-agent eval run --teacher-url http://127.0.0.1:8080/v1 --teacher-model m --record conversations.jsonl
      edge-agent eval run -c base -c guidelines -c pack -c transfer --transfer-model ./other.gguf --replay c.jsonl
    """
    from .wiring import run_from_options

    with _Bar(enabled=sys.stderr.isatty() and not opts["as_json"]) as progress:
        data, paths, notes = run_from_options(opts, progress)
    for note in notes:
        click.echo(note, err=True)
    _print(data["summary"], opts["as_json"], data.get("stopped", ""), paths)


def _print(summary: dict[str, Any], as_json: bool, stopped: str, paths: Sequence[Path]) -> None:
    from .report import text_table

    if as_json:
        click.echo(json.dumps({"summary": summary, "stopped": stopped, "files": [str(p) for p in paths]},
                              indent=2))
        return
    click.echo(text_table(summary))
    if stopped:
        click.secho(f"stopped early: {stopped}", fg="yellow")
    for p in paths:
        click.echo(f"wrote {p}")


@eval_group.command("report")
@click.argument("results", type=click.Path(path_type=Path), default=Path("eval-out"))
@click.option("--baseline", default=None, help="Recompute the differences against this condition.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write report.html (default: beside results.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def report_command(results: Path, baseline: str | None, out_dir: Path | None, as_json: bool) -> None:
    """Re-render report.html (and the summary) from a results.json, offline.

    \b
    Examples:
      edge-agent eval report eval-out
      edge-agent eval report eval-out/results.json --baseline guidelines --out other-report
    """
    from .report import read_results, write_report

    data = read_results(results)
    target = out_dir or (results if results.is_dir() else results.parent)
    paths = write_report(data, target, baseline=baseline)
    summary = json.loads(paths[0].read_text(encoding="utf-8"))["summary"]
    _print(summary, as_json, data.get("stopped", ""), paths)
