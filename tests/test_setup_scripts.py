"""Set-up fits the job: the demo installs no browser, the tests' set-up installs one only when missing,
and a second run of set-up prints each step's time and takes seconds, not minutes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import _REAL_HOME, EMBEDDER_NAME, REPO

SCRIPTS = REPO / "scripts"


def test_only_the_test_command_installs_a_browser() -> None:
    setup = (SCRIPTS / "setup.sh").read_text()
    demo = (SCRIPTS / "demo.sh").read_text()
    test = (SCRIPTS / "test.sh").read_text()
    code = lambda text: "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for name, text in (("setup.sh", setup), ("demo.sh", demo)):
        assert not re.search(r"apt-get|chromium|playwright|puppeteer", code(text)), name
    assert "bash scripts/setup.sh" in demo and "bash scripts/setup.sh" in test
    # test.sh: only when missing, from the system packages
    guard = code(test).index("if ! command -v chromium")
    assert guard < code(test).index("apt-get install -y -q chromium") < code(test).index("pytest")


def _stamp_is_current() -> bool:
    stamp = REPO / os.environ.get("EDGE_AGENT_VENV", ".venv") / ".edge-agent-setup"
    want = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + (SCRIPTS / "setup.sh").read_bytes()).hexdigest()
    return stamp.is_file() and stamp.read_text().strip() == want


@pytest.mark.real
def test_second_setup_run_is_quick_and_timed(tmp_path: Path) -> None:
    if not _stamp_is_current():
        pytest.fail("the venv was set up from an older pyproject.toml or setup.sh; run scripts/setup.sh first")
    exported = _REAL_HOME / "embedders" / EMBEDDER_NAME
    if not (exported / "model.onnx").is_file():
        pytest.fail(f"no exported embedder at {exported}; run scripts/setup.sh first")
    home = tmp_path / "home"
    (home / "embedders").mkdir(parents=True)
    shutil.copytree(exported, home / "embedders" / EMBEDDER_NAME)  # what the first run left behind
    env = {**os.environ, "EDGE_AGENT_HOME": str(home)}
    start = time.monotonic()
    out = subprocess.run(["bash", str(SCRIPTS / "setup.sh")], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    took = time.monotonic() - start
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    steps = re.findall(r"^==> (.+)$", out.stdout, re.MULTILINE)
    timed = re.findall(r"^    (.+): (\d+\.\d) s$", out.stdout, re.MULTILINE)
    assert steps == [name for name, _ in timed] and len(steps) >= 4, out.stdout
    assert "installing" not in out.stdout and "chromium" not in out.stdout.lower()
    total = re.search(r"^set-up done in (\d+\.\d) s$", out.stdout, re.MULTILINE)
    assert total and float(total.group(1)) <= took + 0.5
    assert took < 30, f"a second set-up run took {took:.1f} s"
    assert (home / "packs" / "demo" / "manifest.json").is_file()
