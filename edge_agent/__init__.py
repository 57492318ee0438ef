"""edge-agent: an offline customer-support agent that retrieves readable strategies per turn.

The device runtime: pack reader, ONNX embedder, retrieval, prompt assembly and the llama.cpp
student. Importing it pulls in no torch, sentence-transformers or HTTP client.
"""

__version__ = "0.1.0"
