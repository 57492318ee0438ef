"""Text embedders for the device: the `Embedder` protocol, the ONNX runtime embedder and a fake.

`OnnxEmbedder` needs only onnxruntime and `tokenizers` (no torch). Long texts are cut to the
model's window keeping the *end* of the text, since the latest turns matter most for retrieval.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import ModelError

__all__ = ["EMBEDDER_CONFIG", "Embedder", "HashEmbedder", "OnnxEmbedder", "l2_normalise"]

EMBEDDER_CONFIG = "embedder.json"


@runtime_checkable
class Embedder(Protocol):
    """Texts in, L2-normalised float32 rows out."""

    id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class HashEmbedder:
    """A seeded bag-of-words embedder for tests: deterministic, fast, no model files.

    Texts sharing words get similar vectors, so retrieval behaves plausibly in tests.
    """

    def __init__(self, dim: int = 64, seed: int = 0, id: str | None = None) -> None:
        self.dim = dim
        self.seed = seed
        self.id = id or f"hash-{dim}-{seed}"
        self.calls = 0
        self.texts_embedded = 0

    def _word_vec(self, word: str) -> np.ndarray:
        digest = hashlib.sha256(f"{self.seed}:{word}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return rng.standard_normal(self.dim).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = re.findall(r"[a-z0-9']+", text.lower())
            for word in words:
                out[i] += self._word_vec(word)
            if not words:
                out[i] = self._word_vec("<empty>")
        return l2_normalise(out)


class OnnxEmbedder:
    """A sentence-transformers model exported to ONNX (see `distill.embedder_export.onnx`), run by onnxruntime.

    The directory holds `model.onnx`, `tokenizer.json` and `embedder.json`
    ({"id", "dim", "max_tokens", "pooling": "mean", "normalise": true}).
    """

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        directory = Path(directory)
        config_path = directory / EMBEDDER_CONFIG
        for needed in ("model.onnx", "tokenizer.json", EMBEDDER_CONFIG):
            if not (directory / needed).is_file():
                raise ModelError(
                    f"embedder directory {directory} lacks {needed}; "
                    "re-export it with: edge-agent models export-embedder"
                )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            self.id: str = str(config["id"])
            self.dim: int = int(config["dim"])
            self.max_tokens: int = int(config.get("max_tokens", 256))
        except (ValueError, KeyError, TypeError) as err:
            raise ModelError(f"{config_path} is unreadable or lacks id/dim ({err}); "
                             "re-export it with: edge-agent models export-embedder") from err
        self.pooling: str = config.get("pooling", "mean")
        self.normalise: bool = bool(config.get("normalise", True))
        if self.pooling != "mean":
            raise ModelError(f"{config_path}: pooling {self.pooling!r} is not supported (only 'mean'); "
                             "re-export it with: edge-agent models export-embedder")
        self.directory = directory
        self.calls = 0
        self.texts_embedded = 0

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # Keep the end of long texts: the latest turns decide which strategy applies.
        self.tokenizer.enable_truncation(max_length=self.max_tokens, direction="left")
        # Texts run one at a time (see `embed`); a tokenizer.json saved with fixed-length padding
        # would only add masked work.
        self.tokenizer.no_padding()

        options = ort.SessionOptions()
        # One thread unless told (RuntimeConfig.embed_threads, EDGE_AGENT_EMBED_THREADS at the CLI).
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        # Query shapes vary turn by turn; an arena would keep the largest buffers forever.
        options.enable_cpu_mem_arena = False
        # Prepacked weight copies cost ~13 MB of resident memory for a 34 MB int8 model; single
        # short queries gain little from them (measured in scripts/bench_runtime.py).
        options.add_session_config_entry("session.disable_prepacking", "1")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime's errors share no base class beyond Exception
            raise ModelError(
                f"onnxruntime {ort.__version__} cannot load {directory / 'model.onnx'}: "
                f"{str(err).splitlines()[0][:200]}; upgrade onnxruntime or re-export with: "
                "edge-agent models export-embedder --force"
            ) from err
        self._input_names = {i.name for i in self.session.get_inputs()}

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` before truncation (special tokens included)."""
        self.tokenizer.no_truncation()
        try:
            return len(self.tokenizer.encode(text).ids)
        finally:
            self.tokenizer.enable_truncation(max_length=self.max_tokens, direction="left")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # One text per run, never a padded batch: int8 models quantise activations with one scale
        # per call, so in a batch a text's vector would depend on its neighbours and the padding.
        for row, text in enumerate(texts):
            encoding = self.tokenizer.encode(text)
            ids = np.array([encoding.ids], dtype=np.int64)
            mask = np.array([encoding.attention_mask], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]  # (1, seq, dim)
            weights = mask[:, :, None].astype(np.float32)
            out[row] = ((hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))[0]
        return l2_normalise(out) if self.normalise else out
