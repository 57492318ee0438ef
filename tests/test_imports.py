"""The device package stays light: no torch, sentence-transformers or HTTP clients on import."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ["torch", "sentence_transformers", "transformers", "openai", "httpx", "requests", "aiohttp",
             "urllib3", "fastapi", "uvicorn", "distill"]

CODE = """
import sys
import edge_agent, edge_agent.agent, edge_agent.pack, edge_agent.cli, edge_agent.retrieval
import edge_agent.prompting, edge_agent.embedder, edge_agent.student, edge_agent.models
bad = [m for m in {forbidden!r} if m in sys.modules]
print(",".join(bad))
"""


def test_device_imports_are_light() -> None:
    out = subprocess.run([sys.executable, "-c", CODE.format(forbidden=FORBIDDEN)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"device import pulled in: {out.stdout.strip()}"
