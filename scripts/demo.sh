#!/usr/bin/env bash
# The main job: set up, then hold a short offline demo chat with the default pack and student.
# Interactive when run from a terminal with --interactive; otherwise a scripted customer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
if [ "${1:-}" = "--interactive" ]; then
  exec .venv/bin/edge-agent chat --explain
fi
echo "==> demo chat (offline; the customer's lines are scripted)"
printf '%s\n' \
  "Hi, my internet has been down since yesterday evening and I work from home." \
  "This is the third time this month. I want my money back for the whole month." \
  "Fine. Can you at least send a technician tomorrow?" \
  | .venv/bin/edge-agent chat --explain
