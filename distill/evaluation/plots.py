"""The report's figures as inline SVG strings (matplotlib, Agg backend, no files, no network).

Each function takes the JSON summary (see `statistics.summarise`) or conversation records and
returns one `<svg>` element; text stays text so the browser can search it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .records import Conversation
from .statistics import metric_value

__all__ = ["differences_svg", "distribution_svg", "latency_svg", "persona_heatmap_svg", "strategies_svg"]

_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "edge-agent", "font.size": 10,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(fig: Any) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return re.sub(r"<metadata>.*?</metadata>", "", text[text.find("<svg"):], flags=re.DOTALL)


def _empty(title: str, note: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.4, note, ha="center", va="center", color="#666")
    return _svg(fig)


def distribution_svg(conversations: Sequence[Conversation], conditions: Sequence[str], metric: str,
                     label: str) -> str:
    """Per-conversation values of `metric` for each condition: box plus every point."""
    plt = _plt()
    data = [[v for v in (metric_value(c, metric) for c in conversations if c.condition == n) if v is not None]
            for n in conditions]
    if not any(data):
        return _empty(f"Score distribution: {label}", "nothing measured")
    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(conditions) + 2), 3.4))
    rng = np.random.default_rng(0)
    shown = [d if d else [np.nan] for d in data]
    ax.boxplot(shown, widths=0.5, showfliers=False, medianprops={"color": "#333"})
    for i, values in enumerate(data):
        x = i + 1 + rng.uniform(-0.12, 0.12, len(values))
        ax.scatter(x, values, s=18, alpha=0.7, color=_COLORS[i % len(_COLORS)], zorder=3)
    ax.set_xticks(range(1, len(conditions) + 1), list(conditions))
    ax.set_ylabel(label)
    ax.set_title(f"Score distribution per condition: {label}")
    return _svg(fig)


def differences_svg(summary: Mapping[str, Any]) -> str:
    """Paired differences (condition - baseline) with 95% bootstrap CIs, one panel per metric."""
    plt = _plt()
    diffs: Mapping[str, Mapping[str, Any]] = summary.get("differences", {})
    metrics = [m for m in summary.get("measured", []) if m != "latency_ms" and any(m in d for d in diffs.values())]
    if not diffs or not metrics:
        return _empty("Paired differences vs the baseline", "one condition only: nothing to compare")
    names = list(diffs)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 1.5, 0.6 * len(names) + 1.6),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for j, name in enumerate(names):
            est = diffs[name].get(m)
            if est is None:
                continue
            good = (est["mean"] > 0) == summary["higher_is_better"][m]
            color = ("#2a7d3a" if good else "#b03030") if est["excludes_zero"] else "#777"
            ax.errorbar(est["mean"], j, xerr=[[est["mean"] - est["low"]], [est["high"] - est["mean"]]], fmt="o",
                        color=color, capsize=4)
        ax.axvline(0, color="#999", lw=1, ls="--")
        ax.set_yticks(range(len(names)), names if ax is axes[0][0] else [""] * len(names))
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.set_title(summary["metric_labels"][m], fontsize=9)
    fig.suptitle(f"Paired difference vs {summary.get('baseline')} (mean, 95% CI)", y=1.02)
    return _svg(fig)


def persona_heatmap_svg(summary: Mapping[str, Any]) -> str:
    """Mean primary metric per (condition, persona)."""
    plt = _plt()
    table = summary.get("per_persona", {})
    personas, conds = table.get("personas", []), table.get("conditions", [])
    if not personas or not conds:
        return _empty("Per-persona scores", "no conversations")
    values = np.array([[np.nan if v is None else v for v in row] for row in table["values"]], dtype=float)
    fig, ax = plt.subplots(figsize=(min(18, 0.55 * len(personas) + 3), 0.5 * len(conds) + 2.6))
    im = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(personas)), [p.replace("/", "\n") for p in personas], fontsize=7, rotation=90)
    ax.set_yticks(range(len(conds)), conds)
    if values.size <= 400:
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(f"Per-persona mean: {summary['metric_labels'].get(table['metric'], table['metric'])}")
    return _svg(fig)


def strategies_svg(summary: Mapping[str, Any], top: int = 15) -> str:
    """How often each strategy was injected, per condition (most frequent first)."""
    plt = _plt()
    counts: Mapping[str, Mapping[str, int]] = {k: v for k, v in summary.get("strategies", {}).items() if v}
    if not counts:
        return _empty("Strategy firing counts", "no strategy was injected (no pack condition, or none above threshold)")
    total: dict[str, int] = {}
    for per in counts.values():
        for sid, n in per.items():
            total[sid] = total.get(sid, 0) + n
    ids = sorted(total, key=lambda s: (-total[s], s))[:top]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(ids) + 1.4))
    height = 0.8 / len(counts)
    for k, (cond, per) in enumerate(counts.items()):
        ax.barh([i + k * height for i in range(len(ids))], [per.get(s, 0) for s in ids], height=height,
                label=cond, color=_COLORS[k % len(_COLORS)])
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(ids))], ids, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("turns injected")
    ax.legend(fontsize=8)
    ax.set_title(f"Strategy firing counts (top {len(ids)})")
    return _svg(fig)


def latency_svg(summary: Mapping[str, Any]) -> str:
    """Mean latency per agent turn index, with the min-max range, per condition."""
    plt = _plt()
    series: Mapping[str, list[list[float]]] = summary.get("latency_by_turn", {})
    if not any(series.values()):
        return _empty("Latency per turn", "no turns")
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for k, (cond, turns) in enumerate(series.items()):
        x = np.arange(1, len(turns) + 1)
        mean = [float(np.mean(t)) for t in turns]
        ax.plot(x, mean, marker="o", label=cond, color=_COLORS[k % len(_COLORS)])
        ax.fill_between(x, [min(t) for t in turns], [max(t) for t in turns], alpha=0.15,
                        color=_COLORS[k % len(_COLORS)])
    ax.set_xlabel("agent turn")
    ax.set_ylabel("ms per reply")
    ax.set_xticks(range(1, max(len(t) for t in series.values()) + 1))
    ax.legend(fontsize=8)
    ax.set_title("Latency per turn (mean, min-max band)")
    return _svg(fig)
