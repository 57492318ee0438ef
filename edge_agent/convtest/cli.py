"""`edge-agent test`: run conversation suites offline against a pack and a student.

Exit codes: 0 every check passed; 1 a check failed (or the agent errored); 2 a suite file is bad.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from ..cli import model_option, pack_option, parse_key_values
from ..errors import EdgeAgentError
from .suite import SuiteError

__all__ = ["test_command", "make_context"]


def make_context(agent: Any) -> Any:
    """Checks' context from an Agent: its pack's rules, its embedder and its own rule checker."""
    from .checks import Context

    embed = agent.retriever.embedder.embed if getattr(agent, "retriever", None) is not None else None
    rule_check = getattr(agent, "rule_violations", None)
    return Context(
        rules=list(getattr(agent, "rules", []) or []),
        embed=embed,
        rule_check=rule_check if callable(rule_check) else None,
    )


@click.command("test")
@click.argument("suites", nargs=-1, type=click.Path(path_type=Path))
@pack_option
@model_option
@click.option("-k", "select_expr", default=None, metavar="EXPR",
              help="Only conversations whose id or tags contain these words (not/and/or combine them).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JUnit XML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON instead of the report.")
@click.option("-v", "--verbose", is_flag=True, help="Print every customer line and reply, not only failures.")
@click.option("--mode", default=None, help="Rendering mode to test (default: the pack's).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Override a prompting parameter.")
@click.option("--from-log", "from_log", type=click.Path(path_type=Path), default=None,
              help="Write a suite skeleton from a `chat --json` log, request JSON or transcript, and exit.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --from-log: the suite file to write (default: print it).")
def test_command(
    suites: tuple[Path, ...],
    pack_path: Path | None,
    model: str | None,
    select_expr: str | None,
    junit: Path | None,
    as_json: bool,
    verbose: bool,
    mode: str | None,
    params: Sequence[str],
    from_log: Path | None,
    out_path: Path | None,
) -> None:
    """Run scripted multi-turn conversations and check every reply.

    \b
    Examples:
      edge-agent test tests/conversations/demo.toml
      edge-agent test my-suite.toml --pack packs/my-desk --model my-model --junit report.xml
      edge-agent test my-suite.toml -k refund
      edge-agent test --from-log chat.jsonl --out tests/conversations/kept.toml
    """
    from .runner import merge, run_suite
    from .suite import load_suite, select

    if from_log is not None:
        _from_log(from_log, out_path)
        return
    if not suites:
        raise click.UsageError(
            "give at least one suite file, e.g. edge-agent test tests/conversations/demo.toml"
        )
    try:
        loaded = [select(load_suite(p), select_expr) for p in suites]
    except SuiteError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    if not any(s.conversations for s in loaded):
        click.secho(
            f"error: no conversation matches -k {select_expr!r}; check the ids and tags", fg="red", err=True
        )
        sys.exit(2)
    agent = _agent(pack_path, model, mode, parse_key_values(params, hint="--param"))
    ctx = make_context(agent)

    def progress(conv: Any) -> None:
        if as_json:
            return
        from .report import cut, failure_lines

        mark = click.style("PASS", fg="green") if conv.passed else click.style("FAIL", fg="red")
        click.echo(f"{mark} {conv.id} ({len(conv.turns)} turns)")
        if verbose:
            for t in conv.turns:
                click.echo(f"    you> {cut(t.customer, 100)}")
                click.echo(f"  agent> {cut(t.reply, 160)}  [{t.route}{': ' + t.reason if t.reason else ''}]")
        for line in failure_lines(conv):
            click.echo("  " + line)

    results = [run_suite(s, agent, ctx, on_conversation=progress) for s in loaded if s.conversations]
    result = results[0] if len(results) == 1 else merge(results)
    if junit is not None:
        from .report import write_junit

        write_junit(result, junit)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        from .report import summary_table

        click.echo()
        click.echo(summary_table(result))
    sys.exit(0 if result.passed else 1)


def _agent(pack_path: Path | None, model: str | None, mode: str | None, params: dict[str, Any]) -> Any:
    from ..agent import Agent
    from ..bundle import pack_model, resolve_pack
    from ..cli import default_pack, runtime_config
    from ..pack.manifest import prompting_for
    from ..pack import load_pack

    pack = load_pack(resolve_pack(pack_path) or default_pack())  # a directory, or an installed pack's name
    prompting = None
    if mode or params:
        prompting = prompting_for(pack.settings.table("prompting"), {"mode": mode} if mode else None)
        prompting["params"] = {**dict(prompting.get("params", {}) or {}), **params}
    return Agent.from_pack(pack, pack_model(pack.path, model), prompting=prompting, runtime=runtime_config())


def _from_log(path: Path, out_path: Path | None) -> None:
    from .fromlog import read_exchange, skeleton

    try:
        messages = read_exchange(path)
    except SuiteError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    text = skeleton(messages, path.stem.replace(" ", "-") or "kept")
    if out_path is None:
        click.echo(text, nl=False)
        return
    if out_path.exists():
        raise EdgeAgentError(f"{out_path} already exists; choose another --out (nothing was overwritten)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out_path} ({sum(m['role'] == 'user' for m in messages)} customer lines)")
