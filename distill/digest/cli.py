"""`edge-agent distill digest`: draft the device's short policy with the teacher, for review."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from edge_agent.domain import load_domain

from ..config import settings_from_domain

__all__ = ["digest_command"]


@click.command("digest")
@click.option("--domain", "domain_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Digest file to write (default: DOMAIN.digest.jsonl next to the domain file).")
@click.option("--teacher-url", envvar="EDGE_AGENT_TEACHER_URL", show_envvar=True, default=None)
@click.option("--teacher-model", envvar="EDGE_AGENT_TEACHER_MODEL", show_envvar=True, default=None)
@click.option("--api-key-env", default=None, help="Name of the environment variable holding the API key.")
@click.option("--timeout-s", type=click.FloatRange(min=0.1), default=None, help="Timeout for the one teacher call.")
@click.option("--max-rules", type=click.IntRange(1, 40), default=10, show_default=True)
@click.option("--max-chars", type=click.IntRange(200, 8000), default=1400, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing digest file (its review history is lost).")
def digest_command(domain_path: Path, out: Path | None, teacher_url: str | None, teacher_model: str | None,
                   api_key_env: str | None, timeout_s: float | None, max_rules: int, max_chars: int,
                   force: bool) -> None:
    """Draft the device's short policy from the domain's full one, for review.

    The teacher, judge and lint keep the full [policy] text; the student sees the digest once
    the domain names it (`digest_file = "..."` under [policy]).

    \b
    Example:
      edge-agent distill digest --domain desk.toml --teacher-url http://127.0.0.1:8080/v1 --teacher-model local
      edge-agent library review desk.digest.jsonl
    """
    from edge_agent.digest import write_digest

    from ..roles.openai_chat import OpenAIChat
    from .draft import draft_digest

    domain = load_domain(domain_path)
    target = out or domain_path.with_suffix(".digest.jsonl")
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists (and may hold a reviewed digest); pass --force to replace it")
    settings = settings_from_domain(domain.settings, domain_path.name).with_overrides(teacher={
        "base_url": teacher_url, "model": teacher_model, "api_key_env": api_key_env, "timeout_s": timeout_s})
    endpoint = settings.endpoint("teacher")
    backend = OpenAIChat(endpoint)

    async def main() -> Any:
        try:
            return await draft_digest(domain, backend, endpoint, max_rules=max_rules, max_chars=max_chars)
        finally:
            backend.close()

    record, warnings = asyncio.run(main())
    write_digest(target, record)
    click.echo(f"wrote {target}: a {record.provenance['chars']}-character digest of the "
               f"{len(domain.policy.strip())}-character policy, pending review")
    for line in warnings:
        click.secho(f"check: {line}", fg="yellow", err=True)
    click.echo(f"next: edge-agent library review {target}\n      then add digest_file = \"{target.name}\" "
               f"under [policy] in {domain_path.name} (keep the file next to it)")
