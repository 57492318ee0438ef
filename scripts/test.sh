#!/usr/bin/env bash
# Set up (idempotent), then run every test tier: fast fakes, the real GGUF and ONNX embedder,
# and the real OpenAI-compatible servers on 127.0.0.1. Exits non-zero on any failure,
# including pytest's "no tests collected" (exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
