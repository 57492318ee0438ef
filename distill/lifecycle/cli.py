"""`edge-agent library ...`: browse, review, edit, diff, lint and export a strategy library.

A thin click layer over the lifecycle modules; `pack rebuild` and `pack export` live in
`cli_pack` and are re-exported here for the lazy loader in `edge_agent.cli`.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from edge_agent.library import SOURCES, STATUSES, Strategy, write_library

from .cli_lint import lint_command
from .cli_pack import pack_export_command, pack_rebuild_command, retrieve_hits
from .diff import DIFF_FIELDS, diff_libraries, render_diff
from .review import apply_decisions, read_decisions, review_interactive
from .store import (
    add_strategy,
    counts,
    edit_strategy,
    find_strategy,
    import_strategies,
    open_library,
    remove_strategies,
    save_library,
    utc_now,
)

__all__ = ["library_group", "pack_export_command", "pack_rebuild_command"]

source_arg = click.argument("source", type=click.Path(path_type=Path))
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
reviewer_option = click.option("--reviewer", default=None, envvar="EDGE_AGENT_REVIEWER", show_envvar=True,
                               help="Name recorded in the review history (default: your login name).")


def _who(reviewer: str | None) -> str:
    if reviewer:
        return reviewer
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _detail(s: Strategy) -> None:
    click.secho(f"{s.id}  [{s.status}, {s.source}]" + (f"  tags: {', '.join(s.tags)}" if s.tags else ""), bold=True)
    for name in ("scenario", "strategy", "compact", "exemplar"):
        text = getattr(s, name).strip()
        if text:
            click.secho(f"  {name}:", fg="cyan")
            click.echo("    " + text.replace("\n", "\n    "))
    for name in ("requires", "establishes"):
        if getattr(s, name):
            click.secho(f"  {name}: ", fg="cyan", nl=False)
            click.echo(", ".join(getattr(s, name)))
    for key, value in sorted(dict(s.provenance).items()):
        click.echo(f"  provenance.{key}: {json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value}")
    for r in s.reviews:
        click.echo(f"  review: {r.decision} by {r.reviewer} at {r.at}" + (f" ({r.note})" if r.note else ""))


@click.group("library")
def library_group() -> None:
    """Audit and fix a strategy library: show, search, review, add, edit, remove, diff, lint, export.

    \b
    SOURCE is a library .jsonl file, a directory holding library.jsonl, or a pack directory
    (packs are read-only; change the library and run `edge-agent pack rebuild`).
    \b
    Examples:
      edge-agent library export ~/.edge-agent/packs/demo --format jsonl -o lib.jsonl
      edge-agent library review lib.jsonl
      edge-agent library diff ~/.edge-agent/packs/demo lib.jsonl
    """


@library_group.command("show")
@source_arg
@click.argument("ids", nargs=-1)
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Only these statuses.")
@click.option("--from", "sources", multiple=True, type=click.Choice(SOURCES), help="Only these sources.")
@json_option
def show_command(source: Path, ids: Sequence[str], statuses: Sequence[str], sources: Sequence[str],
                 as_json: bool) -> None:
    """List strategies, or show given ids (or unique id prefixes) in full.

    \b
    Examples:
      edge-agent library show lib.jsonl --status pending
      edge-agent library show lib.jsonl s-3fa2 --json
    """
    lib = open_library(source)
    items = [lib.strategies[find_strategy(lib.strategies, i)] for i in ids] if ids else lib.strategies
    items = [s for s in items if (not statuses or s.status in statuses) and (not sources or s.source in sources)]
    if as_json:
        click.echo(json.dumps([s.to_json() for s in items], ensure_ascii=False, indent=2))
        return
    if ids:
        for s in items:
            _detail(s)
        return
    c = counts(lib.strategies)
    click.echo(f"{lib.path}: {len(lib.strategies)} strategies ({c['approved']} approved, {c['pending']} pending, "
               f"{c['rejected']} rejected)")
    for s in items:
        click.echo(f"{s.id:14} {s.status:9} {s.source:9} {_one_line(s.compact or s.strategy, 90)}")


@library_group.command("search")
@source_arg
@click.argument("query")
@click.option("--by", type=click.Choice(["text", "retrieval"]), default="text", show_default=True,
              help="text: words in any field; retrieval: embed QUERY and search like the device does.")
@click.option("-k", "--top-k", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--threshold", type=float, default=None, help="Minimum cosine for retrieval (default: the pack's).")
@click.option("--embedder", default=None, help="For a library file: ONNX embedder directory or hash:DIM.")
@json_option
def search_command(source: Path, query: str, by: str, top_k: int, threshold: float | None, embedder: str | None,
                   as_json: bool) -> None:
    """Find strategies by words (all must occur) or through the device's retrieval.

    \b
    Examples:
      edge-agent library search lib.jsonl "refund month"
      edge-agent library search ~/.edge-agent/packs/demo "my router blinks orange" --by retrieval
    """
    lib = open_library(source)
    found: list[tuple[float | None, Strategy]]
    if by == "text":
        words = query.lower().split()
        none: float | None = None
        found = [(none, s) for s in lib.strategies
                 if all(w in " ".join((s.id, s.scenario, s.strategy, s.compact, s.exemplar, *s.tags)).lower()
                        for w in words)][:top_k]
    else:
        found = [(score, s) for score, s in retrieve_hits(lib, query, top_k, threshold, embedder)]
    if as_json:
        click.echo(json.dumps([{**({"score": round(sc, 4)} if sc is not None else {}), **s.to_json()}
                               for sc, s in found], ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("no strategy matches")
    for score, s in found:
        click.secho((f"{score:.3f}  " if score is not None else "") + f"{s.id}  [{s.status}]", bold=True)
        click.echo("  scenario: " + _one_line(s.scenario, 160))
        click.echo("  guidance: " + _one_line(s.compact or s.strategy, 160))


def _ask(s: Strategy, n: int, total: int) -> str:
    click.echo()
    click.secho(f"--- {n}/{total} ---", dim=True)
    _detail(s)
    return str(click.prompt("[a]pprove  [e]dit  [r]eject  [s]kip  [q]uit", type=click.Choice(list("aersq")),
                            show_choices=False))


@library_group.command("review")
@click.argument("library", type=click.Path(path_type=Path))
@click.option("--decisions", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON or TOML file of decisions (non-interactive); see docs/library.md.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES),
              help="Which strategies to walk (default: pending).")
@reviewer_option
@json_option
def review_command(library: Path, decisions: Path | None, statuses: Sequence[str], reviewer: str | None,
                   as_json: bool) -> None:
    """Approve, edit (in $EDITOR), reject or skip strategies; saves after every decision.

    \b
    Examples:
      edge-agent library review lib.jsonl
      edge-agent library review lib.jsonl --decisions decisions.toml --reviewer ana
    """
    lib = open_library(library)
    who = _who(reviewer)
    if decisions is not None:
        rows, file_reviewer = read_decisions(decisions)
        strategies, decided = apply_decisions(lib.strategies, rows, reviewer=reviewer or file_reviewer or who,
                                              at=utc_now())
        save_library(lib, strategies)
    else:
        strategies, decided = review_interactive(
            lib.strategies, ask=_ask, edit=lambda text: click.edit(text, extension=".txt"),
            note=lambda label: str(click.prompt(label, default="", show_default=False)), reviewer=who,
            now=utc_now, statuses=tuple(statuses) or ("pending",), save=lambda items: save_library(lib, items))
    if as_json:
        click.echo(json.dumps({"decided": [{"id": s.id, "status": s.status} for s in decided],
                               "counts": counts(strategies)}))
        return
    c = counts(strategies)
    click.echo(f"{len(decided)} decided; now {c['approved']} approved, {c['pending']} pending, "
               f"{c['rejected']} rejected ({lib.path})")


def _edit_template(text: str, what: str) -> str | None:
    edited = click.edit(text, extension=".txt")
    if edited is None:
        click.echo(f"no changes; {what} cancelled")
    return edited


@library_group.command("add")
@click.argument("library", type=click.Path(path_type=Path))
@click.option("--scenario", default=None, help="The conversation: 'CUSTOMER: ...' and 'AGENT: ...' turns.")
@click.option("--strategy", "text", default=None, help="The guidance for the agent's next reply.")
@click.option("--compact", default="", help="A short imperative form for small students.")
@click.option("--exemplar", default="", help="An example reply in this scenario.")
@click.option("--tag", "tags", multiple=True)
@click.option("--id", "ident", default=None, help="Explicit id (default: derived from the scenario).")
@click.option("--approve", is_flag=True, help="Mark it approved now (default: pending review).")
@click.option("--import", "import_from", type=click.Path(exists=True, path_type=Path), default=None,
              help="Import every strategy of another library or pack (source 'imported', pending).")
@reviewer_option
@json_option
def add_command(library: Path, scenario: str | None, text: str | None, compact: str, exemplar: str,
                tags: Sequence[str], ident: str | None, approve: bool, import_from: Path | None,
                reviewer: str | None, as_json: bool) -> None:
    """Add a hand-written strategy (source 'authored'), or import another library.

    \b
    Examples:
      edge-agent library add lib.jsonl --scenario "CUSTOMER: Can I pause my plan?" \\
          --strategy "Explain that plans cannot be paused; offer the cheapest plan instead." --approve
      edge-agent library add lib.jsonl --import other.jsonl
    """
    from .review import parse_editable_text
    from .store import Library

    lib = open_library(library) if library.exists() else Library(path=library, strategies=[])
    who, at = _who(reviewer), utc_now()
    if import_from is not None:
        incoming = open_library(import_from).strategies
        strategies, added = import_strategies(lib.strategies, incoming, origin=import_from.name, who=who, at=at)
    else:
        if scenario is None or text is None:
            edited = _edit_template("=== scenario ===\nCUSTOMER: \n\n=== strategy ===\n\n=== compact ===\n\n"
                                    "=== exemplar ===\n", "add")
            fields = parse_editable_text(edited) if edited is not None else None
            if not fields:
                return
            scenario, text = fields.get("scenario", ""), fields.get("strategy", "")
            compact, exemplar = fields.get("compact", compact), fields.get("exemplar", exemplar)
        strategies, item = add_strategy(lib.strategies, scenario=scenario, strategy=text, author=who, at=at,
                                        compact=compact, exemplar=exemplar, tags=tags, ident=ident,
                                        status="approved" if approve else "pending")
        added = [item]
    save_library(lib, strategies)
    if as_json:
        click.echo(json.dumps({"added": [s.id for s in added], "path": str(lib.path)}))
    else:
        click.echo(f"added {len(added)} to {lib.path}: {', '.join(s.id for s in added[:10])}"
                   + (" ..." if len(added) > 10 else ""))


@library_group.command("edit")
@click.argument("library", type=click.Path(path_type=Path))
@click.argument("ident")
@click.option("--scenario", default=None)
@click.option("--strategy", "text", default=None)
@click.option("--compact", default=None)
@click.option("--exemplar", default=None)
@click.option("--tag", "tags", multiple=True, help="Replace the tags (repeat for several).")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--note", default="", help="Why; kept in the review history.")
@reviewer_option
@json_option
def edit_command(library: Path, ident: str, scenario: str | None, text: str | None, compact: str | None,
                 exemplar: str | None, tags: Sequence[str], status: str | None, note: str, reviewer: str | None,
                 as_json: bool) -> None:
    """Change a strategy's text (the id stays); with no field options, opens $EDITOR.

    \b
    Examples:
      edge-agent library edit lib.jsonl s-3fa2 --compact "Offer the £20 goodwill credit at most."
      edge-agent library edit lib.jsonl s-3fa2
    """
    from .review import editable_text, parse_editable_text

    lib = open_library(library)
    changes: dict[str, Any] = {k: v for k, v in (("scenario", scenario), ("strategy", text), ("compact", compact),
                                                 ("exemplar", exemplar)) if v is not None}
    if tags:
        changes["tags"] = tags
    if not changes and status is None:
        current = lib.strategies[find_strategy(lib.strategies, ident)]
        edited = _edit_template(editable_text(current), "edit")
        fields = parse_editable_text(edited) if edited is not None else None
        if not fields:
            return
        changes = fields
    strategies, item = edit_strategy(lib.strategies, ident, changes, reviewer=_who(reviewer), at=utc_now(),
                                     note=note, status=status)
    changed = item is not lib.strategies[find_strategy(lib.strategies, item.id)]
    if changed:
        save_library(lib, strategies)
    if as_json:
        click.echo(json.dumps({"id": item.id, "changed": changed, "strategy": item.to_json()}, ensure_ascii=False))
    else:
        click.echo(f"{'edited' if changed else 'unchanged'} {item.id} in {lib.path}")


@library_group.command("remove")
@click.argument("library", type=click.Path(path_type=Path))
@click.argument("ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove_command(library: Path, ids: Sequence[str], yes: bool) -> None:
    """Delete strategies for good (to keep a record instead, reject them in review).

    \b
    Example:
      edge-agent library remove lib.jsonl s-3fa2 s-91bc --yes
    """
    lib = open_library(library)
    kept, removed = remove_strategies(lib.strategies, ids)
    if not yes:
        click.confirm(f"remove {len(removed)} strategies ({', '.join(s.id for s in removed)})?", abort=True)
    save_library(lib, kept)
    click.echo(f"removed {len(removed)}; {len(kept)} left in {lib.path}")


@library_group.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--field", "fields", multiple=True, type=click.Choice(DIFF_FIELDS),
              help="Compare only these fields (default: all).")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the libraries differ.")
@json_option
def diff_command(old: Path, new: Path, fields: Sequence[str], exit_code: bool, as_json: bool) -> None:
    """Added, removed and changed strategies between two libraries or packs, with word diffs.

    \b
    Examples:
      edge-agent library diff ~/.edge-agent/packs/demo lib.jsonl
      edge-agent library diff old.jsonl new.jsonl --field strategy --field compact --json
    """
    a, b = open_library(old), open_library(new)
    result = diff_libraries(a.strategies, b.strategies, tuple(fields) or DIFF_FIELDS)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(render_diff(result, old_name=str(old), new_name=str(new)))
    if exit_code and not result.empty:
        click.get_current_context().exit(1)


@library_group.command("export")
@source_arg
@click.option("--format", "fmt", type=click.Choice(["markdown", "html", "jsonl"]), default="markdown",
              show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
@click.option("--title", default=None, help="Document title (default: from the pack's domain).")
def export_command(source: Path, fmt: str, out: Path | None, title: str | None) -> None:
    """Export for people (Markdown, one self-contained HTML page) or as an editable library (JSONL).

    \b
    Examples:
      edge-agent library export lib.jsonl --format html -o library.html
      edge-agent library export ~/.edge-agent/packs/demo --format jsonl -o lib.jsonl
    """
    from .render import to_html, to_markdown

    lib = open_library(source)
    if fmt == "jsonl":
        if out is None:
            raise click.UsageError("--format jsonl needs -o OUT.jsonl")
        write_library(out, lib.strategies)
        click.echo(f"wrote {len(lib.strategies)} strategies to {out}")
        return
    company = lib.pack.manifest.company if lib.pack else ""
    name = title or (f"{company} strategy library" if company else f"Strategy library: {lib.name}")
    text = to_markdown(lib.strategies, title=name) if fmt == "markdown" else to_html(lib.strategies, title=name)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out} ({len(lib.strategies)} strategies)")


library_group.add_command(lint_command)
