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
# Turn 2 asks for money back before anything is checked: the agent asks who they are instead of
# promising a credit. Turn 3 gives name and postcode: the demo's fact source looks the account and
# the network status page up (edge_agent/demo/accounts.json), and only then is the credit mentioned.
printf '%s\n' \
  "Hi, my internet has been down since yesterday evening and I work from home." \
  "It's been over a day now. Am I getting money back for this?" \
  "Priya Shah, LU1 4AB." \
  "Can you send a technician tomorrow? I'm not paying for it." \
  | .venv/bin/edge-agent chat --explain
