#!/usr/bin/env bash
# Set up (idempotent), then run every test tier: fast fakes, the real GGUF and ONNX embedder,
# and the real OpenAI-compatible servers on 127.0.0.1. Exits non-zero on any failure,
# including pytest's "no tests collected" (exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# Test-only set-up: Debian's headless Chromium for the chat page and report tests, only when missing.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "==> installing chromium (the browser tests drive it headless)"
    start=$SECONDS
    $SUDO apt-get install -y -q chromium >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
    echo "    chromium: $((SECONDS - start)) s"
  else
    echo "error: the browser tests need Chromium and there is no apt-get; install chromium and rerun" >&2
    exit 1
  fi
fi
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
