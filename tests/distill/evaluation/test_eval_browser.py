"""The HTML report renders in a real headless Chromium: a non-blank screenshot and five SVG plots."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from distill.evaluation.cases import CaseSelection, select_cases
from distill.evaluation.conditions import parse_condition
from distill.evaluation.report import write_report
from distill.evaluation.runner import EvalSettings, run_online
from edge_agent.cli import demo_dir
from edge_agent.domain import load_domain
from edge_agent.pack import load_pack
from tests.browser_support import FLAGS, chromium_path
from tests.distill.evaluation.test_eval_runner import CONDS, _parts

FIGURES = ("plot-distribution", "plot-differences", "plot-personas", "plot-strategies", "plot-latency")


def _flags(profile: Path) -> list[str]:
    return [*FLAGS, f"--user-data-dir={profile}"]


def test_report_renders_with_plots(tmp_path: Path, hash_pack: Path) -> None:
    browser = chromium_path()
    domain = load_domain(demo_dir() / "domain.toml")
    cases = select_cases(domain, CaseSelection(personas=4, seed=1))
    conds = (*CONDS, parse_condition("pack", model="good"))
    data = run_online(cases, _parts(domain, pack=load_pack(hash_pack)),
                      EvalSettings(conditions=conds, max_turns=2)).to_json()
    _, page = write_report(data, tmp_path / "out")
    url = page.resolve().as_uri()

    dom = subprocess.run([browser, *_flags(tmp_path / "p1"), "--dump-dom", url], capture_output=True, text=True,
                         timeout=180, check=True).stdout
    for fig in FIGURES:
        start = dom.index(f'<figure id="{fig}">')
        body = dom[start:dom.index("</figure>", start)]
        assert "<svg" in body and body.count("<path") >= 3, fig
    assert "guided - base" in dom

    png = tmp_path / "shot.png"
    subprocess.run([browser, *_flags(tmp_path / "p2"), f"--screenshot={png}", "--window-size=1200,2000", url],
                   capture_output=True, timeout=180, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    ink = np.mean(np.any(pixels < 0.9, axis=-1))  # share of pixels that are not (near) white
    assert 0.02 < ink < 0.9, ink
    assert len(np.unique(pixels.reshape(-1, 3).round(2), axis=0)) > 20  # plots bring colours, not just text
