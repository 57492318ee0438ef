"""The evaluation report: results JSON in, one self-contained HTML file (inline SVG plots) out.

`render_html` needs only the JSON written by `write_results`, so a report can be re-rendered (or
re-summarised with another baseline) long after the run, offline. Also a plain-text table for CLIs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.files import write_json_atomic

from . import plots
from .records import Conversation
from .statistics import summarise

__all__ = ["read_results", "render_html", "resummarise", "text_table", "write_report", "write_results"]

RESULTS_FORMAT = "edge-agent-eval-results"

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1150px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.good{background:#e3f4e5}
.bad{background:#f8e1e1}.muted{color:#777}figure{margin:12px 0}figure svg{max-width:100%;height:auto}
details{margin:4px 0}pre{white-space:pre-wrap;background:#fafafa;padding:6px;border:1px solid #eee}
"""


def write_results(path: Path | str, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, dict(data))
    return path


def read_results(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise ConfigError(f"results file {path} not found; run: edge-agent eval run --out DIR")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name} is not JSON ({exc}); run the evaluation again") from None
    if data.get("format") != RESULTS_FORMAT:
        raise ConfigError(f"{path.name} is not an evaluation results file; pass the results.json of eval run")
    return data


def resummarise(data: Mapping[str, Any], baseline: str | None = None) -> dict[str, Any]:
    """The summary recomputed from the stored conversations (e.g. with another baseline)."""
    convs = [Conversation.from_json(c) for c in data.get("conversations", [])]
    s = data.get("settings", {})
    return summarise(convs, baseline=baseline or s.get("baseline"), pass_level=int(s.get("pass_level", 4)),
                     seed=int(s.get("seed", 0)))


def _fmt(e: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not e:
        return "-"
    return f"{e['mean']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def text_table(summary: Mapping[str, Any]) -> str:
    """Conditions x metrics (mean [95% CI]) and the paired differences, as aligned text."""
    metrics = list(summary.get("measured", []))
    rows = [["condition", "n", *metrics, "excellent", "pass^1"]]
    for name, row in summary.get("conditions", {}).items():
        exc = row.get("excellent")
        rows.append([name, str(row["conversations"]), *(_fmt(row.get(m), 2 if m == "latency_ms" else 3)
                                                         for m in metrics),
                     f"{exc['count']}/{exc['of']}" if exc else "-",
                     "-" if row["pass_k"].get("1") is None else f"{row['pass_k']['1']:.2f}"])
    for name, diff in summary.get("differences", {}).items():
        rows.append([name, "", *(_fmt(diff.get(m)) + (" *" if diff.get(m, {}).get("excludes_zero") else "")
                                 for m in metrics), "", ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n(* = 95% CI of the paired difference excludes zero)"


def _summary_tables(summary: Mapping[str, Any]) -> str:
    e = html.escape
    metrics = list(summary.get("measured", []))
    labels = summary.get("metric_labels", {})
    head = "".join(f"<th>{e(labels.get(m, m))}</th>" for m in metrics)
    out = [f"<table id='summary'><tr><th>condition</th><th>n</th>{head}<th>excellent</th><th>pass^k</th></tr>"]
    for name, row in summary.get("conditions", {}).items():
        exc = row.get("excellent")
        passk = ", ".join(f"k={k}: {v:.2f}" for k, v in row["pass_k"].items() if v is not None) or "-"
        cells = "".join(f"<td>{_fmt(row.get(m), 1 if m == 'latency_ms' else 3)}</td>" for m in metrics)
        out.append(f"<tr><td>{e(name)}</td><td>{row['conversations']}</td>{cells}"
                   f"<td>{(str(exc['count']) + '/' + str(exc['of'])) if exc else '-'}</td><td>{e(passk)}</td></tr>")
    out.append("</table>")
    diffs = summary.get("differences", {})
    if diffs:
        out.append(f"<table id='differences'><tr><th>paired difference</th>{head}</tr>")
        for name, diff in diffs.items():
            tds: list[str] = []
            for m in metrics:
                d = diff.get(m)
                cls = ""
                if d and d["excludes_zero"]:
                    cls = "good" if (d["mean"] > 0) == summary["higher_is_better"][m] else "bad"
                tds.append(f"<td class='{cls}'>{_fmt(d)}</td>")
            out.append(f"<tr><td>{e(name)}</td>{''.join(tds)}</tr>")
        out.append("</table><p class='muted'>Green/red: the 95% bootstrap CI excludes zero (better/worse than "
                   "the baseline); grey: not distinguishable with this many conversations.</p>")
    return "\n".join(out)


def _conversations(convs: list[Conversation], limit: int = 60) -> str:
    e = html.escape
    parts = []
    for c in convs[:limit]:
        title = f"{c.condition} | {c.case.intent} | {c.case.persona_key} | trial {c.case.trial}"
        score = "" if c.judge_score is None else f" | judge {c.judge_score}"
        body = "".join(
            f"<pre>CUSTOMER: {e(t.customer)}\nAGENT: {e(t.reply)}"
            + (f"\n[strategies: {e(', '.join(t.strategies))}]" if t.strategies else "")
            + (f"\n[violations: {e(', '.join(t.violations))}]" if t.violations else "") + "</pre>"
            for t in c.turns)
        parts.append(f"<details><summary>{e(title)}{e(score)}</summary>{body}"
                     f"<p class='muted'>{e(c.judge_reason or c.error)}</p></details>")
    more = f"<p class='muted'>{len(convs) - limit} more in results.json</p>" if len(convs) > limit else ""
    return "\n".join(parts) + more


def render_html(data: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> str:
    """One self-contained HTML page: tables, five inline-SVG plots and sample conversations."""
    e = html.escape
    summary = summary or data["summary"]
    convs = [Conversation.from_json(c) for c in data.get("conversations", [])]
    conds = list(summary.get("conditions", {}))
    primary = summary.get("primary", "similarity")
    label = summary.get("metric_labels", {}).get(primary, primary)
    figures = {
        "plot-distribution": plots.distribution_svg(convs, conds, primary, label),
        "plot-differences": plots.differences_svg(summary),
        "plot-personas": plots.persona_heatmap_svg(summary),
        "plot-strategies": plots.strategies_svg(summary),
        "plot-latency": plots.latency_svg(summary),
    }
    figs = "\n".join(f"<figure id='{k}'>{svg}</figure>" for k, svg in figures.items())
    s = data.get("settings", {})
    stopped = f"<p class='bad'>Stopped early: {e(data['stopped'])}</p>" if data.get("stopped") else ""
    meta = e(json.dumps({"mode": data.get("mode"), "settings": s, "meta": data.get("meta", {})}, indent=1, sort_keys=True))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge-agent evaluation</title>
<style>{_CSS}</style></head><body>
<h1>edge-agent evaluation</h1>
<p>Mode <b>{e(str(data.get('mode')))}</b>; baseline <b>{e(str(summary.get('baseline')))}</b>;
{len(convs)} conversations; conditions: {e(', '.join(conds))}. Pass rule: {e(summary.get('pass_rule', ''))}.</p>
{stopped}
<h2>Results (mean, 95% bootstrap CI)</h2>
{_summary_tables(summary)}
<h2>Plots</h2>
{figs}
<h2>Conversations</h2>
{_conversations(convs)}
<h2>Run settings</h2><pre>{meta}</pre>
</body></html>
"""


def write_report(data: Mapping[str, Any], out_dir: Path | str, baseline: str | None = None) -> tuple[Path, Path]:
    """results.json and report.html in `out_dir`; returns both paths."""
    out = Path(out_dir)
    summary = resummarise(data, baseline) if baseline else data["summary"]
    results = write_results(out / "results.json", {**dict(data), "summary": summary})
    page = out / "report.html"
    page.write_text(render_html(data, summary), encoding="utf-8")
    return results, page
