"""`edge-agent pack bundle | install | list`: one-file bundles to copy a pack (and its model) to a device.

A thin click layer over `edge_agent.bundle`; every problem is a one-line error naming the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .bundle import install_bundle, installed_packs, packs_dir, resolve_pack, write_bundle

__all__ = ["pack_bundle_command", "pack_install_command", "pack_list_command"]


@click.command("bundle")
@click.argument("pack", required=False)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The bundle file to write, e.g. desk.eapack.")
@click.option("--name", default=None, help="Name the pack installs as (default: the pack folder's name).")
@click.option("--model", default=None,
              help="Student to pin: a registered name or GGUF path (default: the pack's pin, else the default).")
@click.option("--include-model", is_flag=True, help="Put the student GGUF in the bundle too (about 100 MB).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--json", "as_json", is_flag=True)
def pack_bundle_command(pack: str | None, out: Path, name: str | None, model: str | None, include_model: bool,
                        force: bool, as_json: bool) -> None:
    """Write a pack, its model pin and optionally the GGUF into one file.

    PACK is a pack directory or the name of an installed pack (default: the demo pack).

    \b
    Examples:
      edge-agent pack bundle demo --out desk.eapack --name desk
      edge-agent pack bundle ./packs/desk --out desk.eapack --include-model
    """
    root = resolve_pack(pack) or packs_dir() / "demo"
    report = write_bundle(root, out, name=name, model=model, include_model=include_model, force=force)
    if as_json:
        click.echo(json.dumps({"path": str(report.path), "name": report.name, "files": report.files,
                               "bytes": report.bytes, "model": report.model}))
        return
    with_model = "with the model file" if report.model.get("file") else "model pinned, not included"
    click.echo(f"wrote {report.path}: pack {report.name}, {report.files} files, {report.bytes / 1e6:.1f} MB; "
               f"{report.model['name']} ({with_model})")


@click.command("install")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Install under this name instead of the bundle's.")
@click.option("--force", is_flag=True, help="Replace an installed pack of the same name.")
@click.option("--json", "as_json", is_flag=True)
def pack_install_command(bundle: Path, name: str | None, force: bool, as_json: bool) -> None:
    """Verify a bundle completely, then install it into $EDGE_AGENT_HOME/packs/NAME.

    \b
    Examples:
      edge-agent pack install desk.eapack
      edge-agent chat --pack desk
    """
    report = install_bundle(bundle, name=name, force=force)
    if as_json:
        click.echo(json.dumps({"name": report.name, "path": str(report.path), "model": report.model,
                               "model_path": str(report.model_path) if report.model_path else None,
                               "replaced": report.replaced}))
        return
    verb = "replaced" if report.replaced else "installed"
    model = f"model {report.model}" + (f" at {report.model_path}" if report.model_path else " (pinned)")
    click.echo(f"{verb} pack {report.name} at {report.path}; {model}. Chat: edge-agent chat --pack {report.name}")


@click.command("list")
@click.option("--json", "as_json", is_flag=True)
def pack_list_command(as_json: bool) -> None:
    """List the packs installed in $EDGE_AGENT_HOME/packs (usable as --pack NAME)."""
    names = installed_packs()
    if as_json:
        click.echo(json.dumps(names))
        return
    if not names:
        click.echo(f"no packs in {packs_dir()}; install one with: edge-agent pack install FILE.eapack")
    for name in names:
        click.echo(name)
