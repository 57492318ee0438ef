"""Shared fixtures: an isolated EDGE_AGENT_HOME, small hash-embedded packs, the real models."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from edge_agent.embedder import HashEmbedder
from edge_agent.library import Strategy
from edge_agent.pack import PackSettings, build_pack

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PAPER_DIR = SHARED / "data" / "paper-airline"
# Read before any test overrides it: where scripts/setup.sh exported the ONNX embedder.
_REAL_HOME = Path(os.environ.get("EDGE_AGENT_HOME") or Path.home() / ".edge-agent")
EMBEDDER_NAME = "all-minilm-l6-v2-int8-per-channel"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("EDGE_AGENT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EDGE_AGENT_PACK", raising=False)
    monkeypatch.delenv("EDGE_AGENT_MODEL", raising=False)
    return home


def make_strategies(n: int = 6) -> list[Strategy]:
    topics = [
        ("CUSTOMER: my internet is down since yesterday", "Apologise, check the outage map, offer a credit."),
        ("CUSTOMER: I want a refund for this month", "Explain partial months are not refunded; offer a credit."),
        ("CUSTOMER: the router lights are blinking orange", "Walk through a restart of the router step by step."),
        ("CUSTOMER: I am moving house next month", "Ask for the new address and the moving date."),
        ("CUSTOMER: cancel my contract now", "Verify the account holder, then explain the termination fee."),
        ("CUSTOMER: speed is slow in the evening", "Ask for a wired speed test and the time it was slow."),
        ("CUSTOMER: let me talk to your supervisor", "Offer to escalate and say what happens next."),
        ("CUSTOMER: my bill is higher than usual", "Go through the bill line by line with the customer."),
    ]
    out = []
    for i in range(n):
        scenario, compact = topics[i % len(topics)]
        if i >= len(topics):
            scenario += f" (variant {i})"
        out.append(Strategy(id=f"t-{i:03d}", scenario=scenario, strategy=f"Do: {compact}\nAvoid: blaming.",
                            compact=compact, exemplar=f"Exemplar reply {i}.", source="authored"))
    return out


@pytest.fixture
def hash_pack(tmp_path: Path) -> Path:
    report = build_pack(tmp_path / "pack", make_strategies(8), HashEmbedder(dim=32),
                        domain={"name": "test", "company": "Testnet", "system_prompt": "You help customers."},
                        settings=PackSettings(retrieval={"threshold": 0.2, "top_k": 2}))
    return report.path


def real_embedder_dir() -> Path | None:
    """The exported ONNX embedder from scripts/setup.sh, if present."""
    path = _REAL_HOME / "embedders" / EMBEDDER_NAME
    return path if (path / "model.onnx").is_file() else None


@pytest.fixture(scope="session")
def onnx_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ONNX embedder: the one setup.sh exported, or exported now (needs the distill extra)."""
    found = real_embedder_dir()
    if found is not None:
        return found
    from distill.embedder_export.onnx import export_embedder  # the dev install includes the distill extra

    out = tmp_path_factory.mktemp("embedder") / EMBEDDER_NAME
    export_embedder(None, out)
    return out


@pytest.fixture(scope="session")
def student_path() -> Path:
    from edge_agent.models import resolve_model

    return resolve_model(None).path


def copy_pack(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server (llama_cpp.server) on 127.0.0.1 serving the SmolLM2 GGUF as
    model "smollm2"; one per test session. Yields the base URL ending in /v1."""
    from edge_agent.models import resolve_model

    port = free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model(None).path),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
