"""`edge-agent pack rebuild` and `edge-agent pack export --mobile`, plus retrieval for `library search`.

Rebuilding needs no teacher and no network: the library, an embedder and (optionally) the previous
pack, whose vectors are reused for unchanged strategies.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_agent.cli import default_embedder_dir, default_pack, demo_dir
from edge_agent.domain import load_domain
from edge_agent.errors import ConfigError
from edge_agent.index import ExactIndex
from edge_agent.library import Strategy
from edge_agent.pack import Pack, PackSettings, index_text, load_pack
from edge_agent.retrieval import Retriever

from .rebuild import open_embedder, pack_source, rebuild_pack
from .store import Library, is_pack_dir, open_library

__all__ = ["pack_export_command", "pack_rebuild_command", "retrieve_hits"]


def retrieve_hits(lib: Library, query: str, top_k: int, threshold: float | None,
                  embedder_spec: str | None) -> list[tuple[float, Strategy]]:
    """Search like the device: the pack's embedder and retrieval settings (exact index, no budget)."""
    settings = lib.pack.settings if lib.pack is not None else PackSettings()
    if lib.pack is not None and embedder_spec is None:
        embedder, vectors = lib.pack.open_embedder(), lib.pack.vectors
    else:
        if lib.pack is None and embedder_spec is None:
            raise ConfigError("searching a library file by retrieval needs --embedder (an exported ONNX "
                              "directory or hash:DIM); or search a pack")
        embedder, _ = open_embedder(embedder_spec, None, default_embedder_dir())
        vectors = embedder.embed([index_text(s, settings.retrieval.query_turns) for s in lib.strategies])
    base = settings.retrieval
    cfg = base.merged(top_k=top_k, threshold=threshold, budget_tokens=10**9,
                      candidates=max(top_k, base.candidates))
    found = Retriever(embedder, ExactIndex(vectors), lib.strategies, vectors, cfg).search_text(query)
    return [(h.score, h.strategy) for h in found.hits]


@click.command("rebuild")
@click.option("--pack", "old_path", type=click.Path(path_type=Path), default=None,
              help="Previous pack: vectors to reuse, embedder, domain and settings (default: the demo pack).")
@click.option("--library", type=click.Path(path_type=Path), default=None,
              help="Library to pack (default: the previous pack's own strategies).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Pack directory to write (default: replace the previous pack).")
@click.option("--embedder", default=None,
              help="Exported ONNX embedder directory, or hash:DIM for tests (default: the previous pack's).")
@click.option("--domain", type=click.Path(path_type=Path), default=None,
              help="Domain TOML for the system prompt, settings and lint rules (default: the previous pack's).")
@click.option("--approved-only", is_flag=True, help="Leave out pending strategies (rejected never go in).")
@click.option("--allow-lint-flags", is_flag=True, help="Build even when `library lint` flags strategies.")
@click.option("--full", is_flag=True, help="Embed every strategy again instead of reusing vectors.")
@click.option("--force", is_flag=True,
              help="Write into a non-empty --out directory that is not a pack (its other files are kept).")
@click.option("--json", "as_json", is_flag=True)
def pack_rebuild_command(old_path: Path | None, library: Path | None, out: Path | None, embedder: str | None,
                         domain: Path | None, approved_only: bool, allow_lint_flags: bool, full: bool,
                         force: bool, as_json: bool) -> None:
    """Re-embed and re-index a library without the teacher; unchanged strategies are reused.

    \b
    Examples:
      edge-agent pack rebuild --library lib.jsonl             # update the demo pack in place
      edge-agent pack rebuild --library lib.jsonl --approved-only --out packs/reviewed
      edge-agent pack rebuild --embedder ./other-embedder --out packs/other   # switch embedder
    """
    old_root = old_path or default_pack()
    old: Pack | None = None
    if is_pack_dir(old_root):
        old = load_pack(old_root, use_faiss=False)
    elif old_path is not None:
        raise ConfigError(f"{old_path} is not a pack directory (no manifest.json); drop --pack to build a new one")
    if library is None and old is None:
        raise ConfigError("nothing to rebuild: pass --library LIB.jsonl (and --domain for a new pack)")
    if out is None and old is None:
        raise ConfigError("no previous pack to replace; pass --out DIR")
    strategies = open_library(library).strategies if library is not None else list(old.strategies)  # type: ignore[union-attr]
    dom = load_domain(domain) if domain is not None else (None if old else load_domain(demo_dir() / "domain.toml"))
    if domain is None and old is None and not as_json:
        click.secho(f"note: no --domain and no previous pack, so the demo domain ({dom.company}) gives the system "  # type: ignore[union-attr]
                    "prompt, rules and settings; pass --domain DOMAIN.toml for your own desk", fg="yellow", err=True)
    source = pack_source(dom, old)
    emb, emb_dir = open_embedder(embedder, old, default_embedder_dir())
    result = rebuild_pack(
        out or old_root, strategies, emb, source, embedder_dir=emb_dir, reuse=None if full else old,
        approved_only=approved_only, allow_lint_flags=allow_lint_flags, force=force,
        build={"library": library.name if library else "previous pack", "domain": source.domain.get("name", "")},
    )
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    r = result.report
    click.echo(f"wrote {r.path}: {r.strategies} strategies ({r.embedded} embedded, {r.reused} reused) with "
               f"{result.embedder_id}; left out {result.dropped_rejected} rejected"
               + (f" and {result.dropped_pending} pending" if approved_only else ""))
    flagged = [f for f in result.flags if f.blocks]
    if flagged:
        click.echo(f"warning: built with {len(flagged)} lint flag(s) allowed; see: edge-agent library lint {r.path}")


@click.command("export")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--mobile", "mobile", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Zip to write: strategies.json, float16 vectors, the ONNX embedder and FORMAT.md.")
@click.option("--json", "as_json", is_flag=True)
def pack_export_command(path: Path | None, mobile: Path, as_json: bool) -> None:
    """Export a pack for phones: brute-force searchable without FAISS (see FORMAT.md in the zip).

    \b
    Example:
      edge-agent pack export --mobile demo-mobile.zip
      edge-agent pack export packs/reviewed --mobile reviewed.zip
    """
    from .mobile_bundle import export_mobile

    pack = load_pack(path or default_pack(), use_faiss=False)
    result = export_mobile(pack, mobile)
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    click.echo(f"wrote {result.path}: {result.strategies} strategies, dim {result.dim}, {len(result.files)} files"
               + (f"; left out {result.dropped_rejected} rejected" if result.dropped_rejected else ""))
    if pack.embedder_info.get("kind") == "hash":
        click.echo("note: this pack uses the test hash embedder; the bundle has no ONNX model")
