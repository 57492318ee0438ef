"""The `edge-agent chat` session loop: read customer lines, fit the conversation, print replies.

Input is read as bytes and decoded leniently (`textsafe`), so binary or invalid UTF-8 on stdin is
answered, not a traceback. The conversation is trimmed from its oldest turns to fit the context
window, like the server does; a line too long to fit even alone is refused with a one-line error
and the session goes on with the next line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from .backends import LocalModel
from .errors import ModelError
from .history import fit_history
from .textsafe import clean_text, decode_line

__all__ = ["chat_session", "read_lines"]



# Characters JSON may leave raw that line-based readers (str.splitlines, many log tools) split on.
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_line(obj: Any) -> str:
    """One JSON object on exactly one line, whatever the text holds."""
    text = json.dumps(obj, ensure_ascii=False)
    for raw, escaped in _LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text

def read_lines(stream: IO[bytes]) -> Iterator[str]:
    """Non-empty, stripped, cleaned lines of a byte stream."""
    for raw in stream:
        line = decode_line(raw).strip()
        if line:
            yield line


def _prompted() -> Iterator[str]:
    while True:
        try:
            line = click.prompt(click.style("you", fg="cyan"), prompt_suffix="> ")
        except (EOFError, click.Abort):
            click.echo()
            return
        line = clean_text(line).strip()
        if line:
            yield line


def _refusal(line: str, exc: ModelError, n_ctx: Any) -> str:
    window = f" (window: {n_ctx} tokens)" if isinstance(n_ctx, int) else ""
    return f"message of {len(line)} characters skipped{window}: {exc}"


def _answer(agent: Any, history: list[dict[str, str]], line: str, *, as_json: bool, interactive: bool) -> Any:
    stream = agent.stream(history)
    if as_json:
        for _ in stream:
            pass
    else:
        if not interactive:
            click.echo(f"you> {line}")
        click.secho("agent> ", fg="green", nl=False)
        for piece in stream:
            click.echo(piece, nl=False)
        click.echo()
    if stream.reply is None:  # pragma: no cover - the iterator always finishes
        raise RuntimeError("the reply stream ended without a reply")
    return stream.reply


def chat_session(agent: Any, *, as_json: bool, explain: bool, interactive: bool | None = None,
                 stdin: IO[bytes] | None = None, explain_reply: Any = None) -> int:
    """Run a chat until input ends; returns how many lines were refused (the exit code is 1 if any)."""
    interactive = sys.stdin.isatty() if interactive is None else interactive
    lines = _prompted() if interactive else read_lines(stdin or sys.stdin.buffer)
    history: list[dict[str, str]] = []
    refused = 0
    if interactive and not as_json:
        company = agent.pack.manifest.company if agent.pack else ""
        click.secho(f"edge-agent chat - {company} (offline; Ctrl-D to quit)", dim=True)
    max_tokens = int(getattr(agent.generation, "max_tokens", 256))
    for line in lines:
        candidate = [*history, {"role": "user", "content": line}]
        try:
            kept, dropped = fit_history(agent, candidate, max_tokens)
            reply = _answer(agent, kept, line, as_json=as_json, interactive=interactive)
        except ModelError as exc:
            refused += 1
            message = _refusal(line, exc, agent.student.n_ctx if isinstance(agent.student, LocalModel) else None)
            if as_json:
                click.echo(json_line({"customer": line[:200], "error": message}))
            else:
                click.secho(f"error: {message}", fg="red", err=True)
            continue
        history = [*kept, {"role": "assistant", "content": reply.text}]
        if as_json:
            click.echo(json_line({"customer": line, **reply.to_json(), **({"trimmed": dropped} if dropped else {})}))
        elif explain and explain_reply is not None:
            explain_reply(reply)
    return refused
