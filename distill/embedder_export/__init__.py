"""Export a sentence-transformers embedder to the ONNX directory the device reads, checked for fidelity."""
