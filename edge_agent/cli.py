"""The `edge-agent` command line: a thin click layer over the library.

Each command parses options, calls one function and prints. Subcommands owned by other modules
are loaded lazily, so `edge-agent chat` never imports the distill side or the server.
Errors the user can fix print one line; set EDGE_AGENT_DEBUG=1 to see tracebacks. The environment's
runtime settings are read once here (`RuntimeConfig.from_env`) and passed down.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import EdgeAgentError, MissingExtraError
from .files import home_dir
from .runtime import RuntimeConfig, debug_enabled

# name -> "module:attribute" of a click command; loaded on first use.
LAZY_COMMANDS: dict[str, str] = {
    "models": "edge_agent.cli_models:models_group",
    "serve": "edge_agent.server.cli:serve_command",
    "test": "edge_agent.convtest.cli:test_command",
    "distill": "distill.cli:distill_group",
    "eval": "distill.evaluation.cli:eval_group",
    "tune": "distill.tuning.cli:tune_command",
    "library": "distill.lifecycle.cli:library_group",
}
LAZY_PACK_COMMANDS: dict[str, str] = {
    "rebuild": "distill.lifecycle.cli:pack_rebuild_command",
    "export": "distill.lifecycle.cli:pack_export_command",
    "bundle": "edge_agent.cli_bundle:pack_bundle_command",
    "install": "edge_agent.cli_bundle:pack_install_command",
    "list": "edge_agent.cli_bundle:pack_list_command",
}
EXTRA_OF_MODULE = {"fastapi": "server", "uvicorn": "server", "torch": "distill", "sentence_transformers": "distill",
                   "openai": "distill", "pydantic": "distill", "scipy": "distill", "rich": "distill",
                   "onnx": "distill", "matplotlib": "distill"}


def _load(target: str) -> click.Command:
    """Import a lazily registered command; if it cannot be imported, a stand-in that says why."""
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in EXTRA_OF_MODULE:
            message = str(MissingExtraError(EXTRA_OF_MODULE[top], top))
        elif top in ("edge_agent", "distill"):
            message = f"this command is not available in this install ({exc.name} is missing); reinstall edge-agent"
        else:
            raise
        return _unavailable(attr, message)
    return getattr(module, attr)


def _unavailable(name: str, message: str) -> click.Command:
    def fail(**_: Any) -> None:
        raise click.ClickException(message)

    return click.Command(name, callback=fail, help=message, short_help="(unavailable: see --help)",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


class LazyGroup(click.Group):
    """A click group whose subcommands may live in modules imported only when used."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            return _load(self.lazy[name])
        return super().get_command(ctx, name)


def default_pack() -> Path:
    return Path(os.environ.get("EDGE_AGENT_PACK") or home_dir() / "packs" / "demo")


def default_embedder_dir() -> Path:
    return home_dir() / "embedders" / "all-minilm-l6-v2-int8-per-channel"


def demo_dir() -> Path:
    return Path(__file__).parent / "demo"


def runtime_config() -> RuntimeConfig:
    """The runtime settings the root command read from the environment (read now outside it)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(RuntimeConfig) if ctx is not None else None
    return found if found is not None else RuntimeConfig.from_env()


class RootGroup(LazyGroup):
    """Reads the runtime settings once (the OpenMP wait policy is set before anything loads
    llama.cpp) and turns EdgeAgentError into a one-line click error (unless EDGE_AGENT_DEBUG is set)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            runtime = ctx.obj = RuntimeConfig.from_env()
            runtime.apply_wait_policy()
            return super().invoke(ctx)
        except EdgeAgentError as exc:
            if debug_enabled():
                raise
            raise click.ClickException(str(exc)) from None


@click.group("edge-agent", cls=RootGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-agent")
def cli() -> None:
    """Offline customer-support agent: a small GGUF student guided by retrieved strategies.

    \b
    Examples:
      edge-agent chat --explain
      echo "My internet is down" | edge-agent chat --json
      edge-agent retrieve "I want a refund"
      edge-agent pack build --library lib.jsonl --domain domain.toml --out mypack
    """


# --- chat --------------------------------------------------------------------------------------
pack_option = click.option("--pack", "pack_path", type=click.Path(path_type=Path), default=None,
                           envvar="EDGE_AGENT_PACK", show_envvar=True,
                           help="Pack directory or installed pack name (default: the demo pack in "
                                "$EDGE_AGENT_HOME/packs/demo).")
model_option = click.option("--model", default=None, envvar="EDGE_AGENT_MODEL", show_envvar=True,
                            help="Registered model name or a GGUF path (default: the registry's default student).")


def parse_key_values(pairs: Sequence[str], hint: str = "--set") -> dict[str, Any]:
    """KEY=VALUE options as a mapping; each value is JSON when it parses as JSON, else the text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair or not pair.split("=", 1)[0]:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=hint)
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@cli.command()
@pack_option
@model_option
@click.option("--explain", is_flag=True, help="Show which strategies fired each turn, with scores.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per turn (for scripts).")
@click.option("--mode", default=None, help="Rendering mode for retrieved strategies (default: the pack's).")
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=None, help="Reply length cap in tokens.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=None)
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Jinja chat template for a GGUF that lacks one.")
@click.option("--set", "retrieval_set", multiple=True, metavar="KEY=VALUE",
              help="Override a retrieval setting, e.g. --set top_k=1 --set threshold=0.5.")
@click.option("--n-ctx", type=click.IntRange(256, 131072), default=None,
              help="Context window in tokens (default: the model's registered one). Older turns are "
                   "dropped to fit; a longer message is skipped with an error.")
def chat(pack_path: Path | None, model: str | None, explain: bool, as_json: bool, mode: str | None,
         max_tokens: int | None, temperature: float | None, chat_template: Path | None,
         retrieval_set: Sequence[str], n_ctx: int | None) -> None:
    """Chat with the agent, offline. Reads customer lines from stdin when piped.

    The oldest turns are dropped to fit the context window; a line too long to fit even alone is
    skipped with an error on stderr, the chat goes on, and the exit code is then 1.

    \b
    Examples:
      edge-agent chat --explain
      printf 'Hi\\nMy bill is wrong\\n' | edge-agent chat --json
      edge-agent chat --model ./my-model.gguf --pack ./mypack
    """
    from .agent import Agent
    from .bundle import pack_model, resolve_pack

    pack_dir = resolve_pack(pack_path) or default_pack()  # a directory, or the name of an installed pack
    agent = Agent.from_pack(
        pack_dir, pack_model(pack_dir, model), chat_template=chat_template, n_ctx=n_ctx,
        retrieval=parse_key_values(retrieval_set),
        prompting={"mode": mode} if mode else None,
        generation={"max_tokens": max_tokens, "temperature": temperature}, runtime=runtime_config(),
    )
    from .cli_chat import chat_session

    if chat_session(agent, as_json=as_json, explain=explain, explain_reply=_explain):
        click.get_current_context().exit(1)  # some lines were skipped (each said why on stderr)


def _explain(reply: Any) -> None:
    if getattr(reply, "reason", ""):  # grounded mode: the route and why, the facts, the candidates
        click.secho(f"  [route {reply.route}] {reply.reason}", dim=True)
        if reply.facts:
            facts = ", ".join(f"{k}={v}" for k, v in sorted(reply.facts.items()))
            click.secho(f"  [facts] {facts}", dim=True)
        for cand in reply.candidates[:5]:
            click.secho(f"  [candidate {cand.id} score {cand.score:.2f} relevance {cand.relevance:.2f}] "
                        f"{cand.verdict}", dim=True)
        t = reply.timings
        click.secho(f"  [{t.get('total_ms', 0):.0f} ms: embed {t.get('embed_ms', 0):.0f}, facts "
                    f"{t.get('facts_ms', 0):.0f}, plan {t.get('plan_ms', 0):.0f}, student {t.get('generate_ms', 0):.0f}]",
                    dim=True)
        return
    if not reply.hits:
        click.secho("  [no strategy above the threshold; none injected]", dim=True)
    for hit in reply.hits:
        text = (hit.strategy.compact or hit.strategy.strategy).replace("\n", " ")
        click.secho(f"  [strategy {hit.strategy.id} score {hit.score:.3f}] {text[:160]}", dim=True)
    t = reply.timings
    line = f"  [retrieval {t.get('retrieval_ms', 0):.1f} ms"
    if "ttft_ms" in t:
        line += (f", first token {t['ttft_ms']:.0f} ms, {t.get('decode_tps', 0):.0f} tok/s, prompt "
                 f"{reply.usage.prompt_tokens} tok ({reply.usage.evaluated_prompt_tokens} evaluated)")
    click.secho(line + "]", dim=True)


# --- retrieve ----------------------------------------------------------------------------------
@cli.command()
@click.argument("text")
@pack_option
@click.option("-k", "--top-k", type=click.IntRange(1, 100), default=None, help="Hits to show.")
@click.option("--threshold", type=float, default=None, help="Minimum cosine (default: the pack's).")
@click.option("--json", "as_json", is_flag=True)
def retrieve(text: str, pack_path: Path | None, top_k: int | None, threshold: float | None, as_json: bool) -> None:
    """Show the strategies a customer message retrieves.

    \b
    Example:
      edge-agent retrieve "my internet has been down since yesterday" -k 3
    """
    from .bundle import resolve_pack
    from .pack import load_pack
    from .retrieval import Retriever

    pack = load_pack(resolve_pack(pack_path) or default_pack())
    cfg = pack.settings.retrieval.merged(
        top_k=top_k, threshold=threshold, budget_tokens=10**9)
    embedder = pack.open_embedder(threads=runtime_config().embed_threads)
    found = Retriever(embedder, pack.index, pack.strategies, pack.vectors, cfg).search_text(text)
    if as_json:
        click.echo(json.dumps({"query": text, "hits": [
            {**h.to_json(), "scenario": h.strategy.scenario, "compact": h.strategy.compact}
            for h in found.hits]}, ensure_ascii=False, indent=2))
        return
    if not found.hits:
        click.echo(f"no strategy scores above the threshold {cfg.threshold}")
    for hit in found.hits:
        click.secho(f"{hit.score:.3f}  {hit.strategy.id}", bold=True)
        click.echo("  scenario: " + hit.strategy.scenario.replace("\n", " ")[:200])
        click.echo("  guidance: " + (hit.strategy.compact or hit.strategy.strategy).replace("\n", " ")[:200])


# --- pack --------------------------------------------------------------------------------------
@cli.group(cls=LazyGroup, lazy=LAZY_PACK_COMMANDS)
def pack() -> None:
    """Build, inspect and verify strategy packs."""


@pack.command("build")
@click.option("--library", type=click.Path(path_type=Path), default=None,
              help="Strategies JSONL (default: the demo library).")
@click.option("--domain", type=click.Path(path_type=Path), default=None,
              help="Domain TOML giving the system prompt, rules and settings (required with --library; "
                   "default: the demo domain).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Pack directory to write.")
@click.option("--embedder", "embedder_dir", type=click.Path(path_type=Path), default=None,
              help="Exported ONNX embedder directory (default: the one made by `models export-embedder`).")
@click.option("--approved-only", is_flag=True, help="Leave out strategies not approved in review.")
@click.option("--allow-lint-flags", is_flag=True, help="Build even when policy/injection lint flags strategies.")
@click.option("--force", is_flag=True,
              help="Write into a non-empty directory that is not a pack (its other files are kept).")
@click.option("--model", default=None, help="Student the pack is for, to size the system prompt against its "
                                            "context window (default: the registry's default student).")
@click.option("--json", "as_json", is_flag=True)
def pack_build(library: Path | None, domain: Path | None, out: Path | None, embedder_dir: Path | None,
               approved_only: bool, allow_lint_flags: bool, force: bool, model: str | None, as_json: bool) -> None:
    """Embed a strategy library and write a pack.

    Rejected strategies never ship; pending ones do unless --approved-only. An existing pack at
    --out is replaced (files you added to it are kept); any other non-empty directory is refused
    unless --force.

    \b
    Example:
      edge-agent pack build --library lib.jsonl --domain desk.toml --out packs/desk
    """
    from .pack.make import build_from_files, to_json

    if library is not None and domain is None:
        raise click.UsageError("--library needs --domain DOMAIN.toml (your desk's policy, rules and settings); "
                               "without both, pack build packs the demo library with the demo domain")
    outcome = build_from_files(library or demo_dir() / "library.jsonl", domain or demo_dir() / "domain.toml",
                               out or default_pack(), embedder_dir or default_embedder_dir(),
                               approved_only=approved_only, allow_lint_flags=allow_lint_flags, force=force,
                               model=model)
    report = outcome.report
    for warning in outcome.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if as_json:
        click.echo(json.dumps(to_json(outcome)))
    else:
        click.echo(f"wrote {report.path} ({report.strategies} strategies, {report.embedded} embedded)")


@pack.command("inspect")
@click.argument("path", type=click.Path(path_type=Path), required=False, metavar="[PATH|NAME]")
@click.option("--json", "as_json", is_flag=True)
def pack_inspect(path: Path | None, as_json: bool) -> None:
    """Show a pack's manifest summary."""
    from .bundle import resolve_pack
    from .pack import load_pack

    loaded = load_pack(resolve_pack(path) or default_pack())
    m = loaded.manifest
    if as_json:
        click.echo(json.dumps(m.to_json(), indent=2, ensure_ascii=False))
        return
    click.echo(f"pack        {loaded.path}")
    click.echo(f"format      {m['format']} v{m['format_version']}")
    click.echo(f"domain      {m.domain.get('name', '-')}  ({m.company})")
    digest = m.domain.get("digest")
    if isinstance(digest, dict):  # the student sees this short policy; the full one is kept beside it
        who = f", reviewed by {digest['reviewed_by']}" if digest.get("reviewed_by") else ""
        chars, status = len(str(digest.get("text", ""))), digest.get("status", "?")
        click.echo(f"policy      digest of {chars} characters ({status}{who}) "
                   f"for a {len(str(m.domain.get('policy', '')))}-character policy")
    click.echo(f"strategies  {m.counts['strategies']}  (approved {m.counts.get('approved', '?')})")
    click.echo(f"embedder    {m.embedder.get('id')}  dim {m.embedder.get('dim')}  "
               f"{m.embedder.get('quantization', '')}")
    click.echo(f"index       {m.index.get('kind')}")
    click.echo(f"settings    {json.dumps(m.get('settings', {}))}")
    for rel, entry in sorted(m.files.items()):
        click.echo(f"  {entry['bytes']:>10}  {entry['sha256'][:16]}  {rel}")


@pack.command("verify")
@click.argument("path", type=click.Path(path_type=Path), required=False, metavar="[PATH|NAME]")
@click.option("--repair", is_flag=True, help="Rebuild index.faiss from vectors.npy if it is bad.")
@click.option("--strict", is_flag=True, help="Also fail on manifest fields this version does not know.")
def pack_verify(path: Path | None, repair: bool, strict: bool) -> None:
    """Check every file, hash, count and id in a pack and embed one text with its embedder; exit 1 on
    the first problem."""
    from .bundle import resolve_pack
    from .pack.make import verify_pack

    result = verify_pack(resolve_pack(path) or default_pack(), repair=repair, strict=strict)
    if result.repaired:
        click.echo("rebuilt index.faiss from vectors.npy")
    if result.unknown_fields:
        click.secho(f"note: manifest field(s) {', '.join(result.unknown_fields)} are not known to this version and "
                    "were ignored (--strict refuses them)", fg="yellow", err=True)
    click.echo(f"OK {result.path}: {result.strategies} strategies, dim {result.dim}, all hashes match, "
               "embedder loads")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        # Without standalone mode click returns a command's exit code (ctx.exit(n)) instead of exiting.
        rc = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except EdgeAgentError as exc:
        if debug_enabled():
            raise
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)


if __name__ == "__main__":
    main()
