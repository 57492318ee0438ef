"""A library for human readers: Markdown and one self-contained HTML page, grouped by scenario.

Strategies are grouped by the conversation they come from (the scenario's opening customer
message), shorter scenarios first, each with its status, source, provenance and review history.
Pure functions from strategies to text; no file I/O.
"""

from __future__ import annotations

import html
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.conversation import parse_transcript
from edge_agent.library import Strategy

from .store import counts

__all__ = ["group_by_scenario", "provenance_items", "to_html", "to_markdown"]


def _opening(strategy: Strategy) -> str:
    turns = parse_transcript(strategy.scenario)
    first = next((t["content"] for t in turns if t["role"] == "user"), strategy.scenario)
    return " ".join(first.split())


def group_by_scenario(strategies: Sequence[Strategy]) -> OrderedDict[str, list[Strategy]]:
    """Conversation opening -> its strategies (groups in first-seen order, by scenario length inside)."""
    groups: OrderedDict[str, list[Strategy]] = OrderedDict()
    for s in strategies:
        groups.setdefault(_opening(s), []).append(s)
    for key, items in groups.items():
        groups[key] = sorted(items, key=lambda s: (len(parse_transcript(s.scenario)), s.id))
    return groups


def _scalar(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def provenance_items(strategy: Strategy) -> list[tuple[str, str]]:
    """(label, value) rows: source, then every provenance key, then each review."""
    rows = [("source", strategy.source)]
    rows += [(str(k), _scalar(v)) for k, v in sorted(dict(strategy.provenance).items())]
    for r in strategy.reviews:
        rows.append(("review", f"{r.decision} by {r.reviewer} at {r.at}" + (f": {r.note}" if r.note else "")))
    return rows


def _title(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def to_markdown(strategies: Sequence[Strategy], *, title: str = "Strategy library") -> str:
    c = counts(strategies)
    out = [f"# {title}", "",
           (f"{len(strategies)} strategies: {c['approved']} approved, {c['pending']} pending, "
           f"{c['rejected']} rejected."), ""]
    for opening, items in group_by_scenario(strategies).items():
        out += [f"## {_title(opening)}", ""]
        for s in items:
            out += [f"### `{s.id}` ({s.status})", "", "**Scenario**", ""]
            for turn in parse_transcript(s.scenario):
                label = "CUSTOMER" if turn["role"] == "user" else "AGENT"
                out.append(f"> **{label}:** " + " ".join(turn["content"].split()))
                out.append(">")
            if out[-1] == ">":
                out.pop()
            out += ["", "**Strategy**", "", s.strategy.strip(), ""]
            if s.compact.strip():
                out += ["**Compact**", "", s.compact.strip(), ""]
            if s.exemplar.strip():
                out += ["**Exemplar reply**", "", "> " + " ".join(s.exemplar.split()), ""]
            if s.requires:
                out += ["**Requires (facts that must hold before this reply is used):** " + ", ".join(s.requires), ""]
            if s.establishes:
                out += ["**Establishes:** " + ", ".join(s.establishes), ""]
            if s.tags:
                out += ["**Tags:** " + ", ".join(s.tags), ""]
            out += ["**Provenance**", ""]
            out += [f"- {k}: {v}" for k, v in provenance_items(s)]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2.5rem}
article{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.status{font-size:.8rem;padding:.1rem .5rem;border-radius:1rem;background:#eee}
.approved{background:#d7f5dd}.rejected{background:#fbd5d5}.pending{background:#fff1c2}
.turn{margin:.2rem 0 .2rem 1rem}.who{font-weight:600;font-size:.8rem;color:#555}
.guide{white-space:pre-wrap;background:#f7f7fb;padding:.5rem;border-radius:4px}
table{font-size:.85rem;border-collapse:collapse}td{padding:.1rem .6rem;vertical-align:top}
#q{width:100%;padding:.4rem;font-size:1rem}
"""
_JS = """
document.getElementById('q').addEventListener('input',function(e){var q=e.target.value.toLowerCase();
document.querySelectorAll('article').forEach(function(a){a.style.display=
a.textContent.toLowerCase().indexOf(q)<0?'none':''});});
"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _article(s: Strategy) -> list[str]:
    out = [(f'<article id="{_esc(s.id)}"><h3><code>{_esc(s.id)}</code> '
           f'<span class="status {_esc(s.status)}">{_esc(s.status)}</span></h3>'), "<div>"]
    for turn in parse_transcript(s.scenario):
        who = "CUSTOMER" if turn["role"] == "user" else "AGENT"
        out.append(f'<div class="turn"><span class="who">{who}</span> {_esc(turn["content"])}</div>')
    out += ["</div>", "<h4>Strategy</h4>", f'<div class="guide">{_esc(s.strategy.strip())}</div>']
    if s.compact.strip():
        out += ["<h4>Compact</h4>", f'<div class="guide">{_esc(s.compact.strip())}</div>']
    if s.exemplar.strip():
        out += [f"<details><summary>Exemplar reply</summary><p>{_esc(s.exemplar.strip())}</p></details>"]
    if s.requires:
        out += [f"<p><b>Requires:</b> <code>{_esc(', '.join(s.requires))}</code></p>"]
    if s.establishes:
        out += [f"<p><b>Establishes:</b> <code>{_esc(', '.join(s.establishes))}</code></p>"]
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in provenance_items(s))
    out += [f"<details><summary>Provenance</summary><table>{rows}</table></details>", "</article>"]
    return out


def to_html(strategies: Sequence[Strategy], *, title: str = "Strategy library",
            meta: Mapping[str, str] | None = None) -> str:
    """One HTML file with inline CSS and a small inline filter script; everything escaped."""
    c = counts(strategies)
    groups = group_by_scenario(strategies)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_esc(title)}</h1>",
           (f"<p>{len(strategies)} strategies in {len(groups)} conversations: {c['approved']} approved, "
           f"{c['pending']} pending, {c['rejected']} rejected.</p>")]
    for k, v in (meta or {}).items():
        out.append(f"<p><b>{_esc(k)}</b>: {_esc(v)}</p>")
    out.append('<input id="q" type="search" placeholder="Filter strategies by any text...">')
    for n, (opening, items) in enumerate(groups.items(), 1):
        out.append(f'<section id="g{n}"><h2>{_esc(_title(opening))}</h2>')
        for s in items:
            out += _article(s)
        out.append("</section>")
    out += [f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(out) + "\n"
