"""Take the README's screenshot of the chat page: `edge-agent serve` (demo pack, real student) in
headless Chromium, one customer message, the reply and its panel.

    .venv/bin/python scripts/chat_screenshot.py [--out docs/chat-page.png] [--pack P] [--message TEXT]...
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser_support import Browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "chat-page.png")
    parser.add_argument("--pack", default=None, help="pack directory or installed name (default: the demo pack)")
    parser.add_argument("--message", action="append", default=None,
                        help="a customer message; repeat for more turns")
    args = parser.parse_args()
    messages = args.message or ["Hi, my internet has been down since yesterday evening and I work from home."]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pack = ["--pack", args.pack] if args.pack else []
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "edge-agent"), "serve", "--port", str(port), *pack,
                               "--log-level", "warning"], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("edge-agent serve did not start; run scripts/setup.sh first") from None
                time.sleep(0.3)
        with tempfile.TemporaryDirectory() as tmp, Browser(Path(tmp) / "profile", width=1280, height=760) as browser:
            browser.goto(f"http://127.0.0.1:{port}/")
            browser.wait_for("document.getElementById('model').textContent.startsWith('model ')")
            for turn, message in enumerate(messages, 1):
                browser.type_text("#input", message)
                browser.click("#send")
                browser.wait_for(f"!window.edgeAgentChat.busy() && document.querySelectorAll("
                                 f"'#log .msg.assistant:not(.pending)').length === {turn}", timeout=180)
            browser.wait_for("[...document.querySelectorAll('#panel .strategies .body')]"
                             ".every((n) => n.textContent.length > 0)", timeout=20)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.screenshot(args.out)
        print(f"wrote {args.out}")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
