"""edge-agent: an offline customer-support agent whose every reply is a checked choice.

The device runtime: pack reader, ONNX embedder, retrieval, facts, the turn planner and the
llama.cpp student. Importing it pulls in no torch, sentence-transformers or HTTP client; the names
below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "Agent": "agent", "Reply": "reply", "ReplyStream": "reply",
    "Pack": "pack", "load_pack": "pack", "build_pack": "pack",
    "Strategy": "library", "read_library": "library",
    "Domain": "domain", "load_domain": "domain",
    "ChatBackend": "backends", "ChatResult": "backends", "ChatStream": "backends", "Usage": "backends",
    "GenerationConfig": "backends", "ScriptedChat": "backends", "make_backend": "backends",
    "Embedder": "embedder", "OnnxEmbedder": "embedder", "HashEmbedder": "embedder",
    "FactSpec": "facts", "Facts": "facts",
    "Planner": "planner", "Plan": "planner",
    "EdgeAgentError": "errors", "ConfigError": "errors", "PackError": "errors", "ModelError": "errors",
    "BackendError": "errors",
}
__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_agent' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
