"""Export a sentence-transformers embedder to the ONNX directory that `OnnxEmbedder` reads.

Loads the model offline from a local directory, traces the transformer to ONNX, optionally
quantises the weights to int8, and refuses the result unless it matches the torch model on the
fixed text set (`distill.embedder_export.fidelity`). Results are cached under `home_dir()/embedders/`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.embedder import EMBEDDER_CONFIG, OnnxEmbedder
from edge_agent.errors import MissingExtraError, ModelError
from edge_agent.files import home_dir, write_json_atomic
from edge_agent.modelcheck import cached_sha256
from edge_agent.models import EMBEDDER, default_model_name, list_models, resolve_model, verify_model

from .fidelity import FIDELITY_TEXTS, Fidelity, compare_embeddings
from .quantization import QUANTIZATIONS, quantize_model

__all__ = [
    "DEFAULT_QUANTIZATION",
    "MIN_MEAN_COSINE",
    "QUANTIZATIONS",
    "ExportReport",
    "cache_dir",
    "check_fidelity",
    "export_embedder",
    "measure_query_ms",
    "resolve_embedder_source",
]

log = logging.getLogger(__name__)

DEFAULT_QUANTIZATION = "int8-per-channel"
MIN_MEAN_COSINE = 0.99
EXPORT_FORMAT = 2  # bump when the exported graph or embedder.json changes meaning
_OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    """What an export produced (or found in the cache) and how faithful it is."""

    out_dir: Path
    id: str
    dim: int
    max_tokens: int
    quantization: str
    onnx_bytes: int
    fp32_onnx_bytes: int
    min_cosine: float
    mean_cosine: float
    n_texts: int
    seconds: float
    ms_per_query: float  # one 128-token query, 1 thread, this machine
    reused: bool

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "out_dir": str(self.out_dir)}


def resolve_embedder_source(name_or_dir: str | Path | None = None) -> tuple[Path, str, dict[str, str]]:
    """A local sentence-transformers directory, its embedder id and where it came from.

    Takes a registry name (default: the registry's default embedder) or a directory saved with
    `SentenceTransformer.save()`.
    """
    path = Path(name_or_dir).expanduser() if name_or_dir is not None else None
    if path is not None and path.is_dir():
        if not (path / "modules.json").is_file():
            raise ModelError(f"{path} is not a sentence-transformers directory (no modules.json); "
                             "pass a registry name or a directory saved with SentenceTransformer.save()")
        weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin")
                        if (path / n).is_file()), None)
        if weights is None:
            raise ModelError(f"{path} has no model.safetensors; re-save the model with safetensors")
        real = path.resolve()
        return real, real.name.lower(), {"directory": real.name, "weights_sha256": cached_sha256(weights)}
    if path is not None and path.exists():
        raise ModelError(f"{path} is not a directory; pass a sentence-transformers directory or a name")
    name = str(name_or_dir) if name_or_dir is not None else default_model_name(EMBEDDER)
    names = [entry.name for entry in list_models() if entry.kind == EMBEDDER]
    if name not in names:
        raise ModelError(f"unknown embedder {name!r}; use one of: {', '.join(names) or '(none)'}, "
                         "or pass a sentence-transformers directory")
    spec = resolve_model(name, kind=EMBEDDER)
    verify_model(spec)
    return spec.path, spec.name, {"package": spec.package or "", "version": spec.version or "",
                                  "weights_sha256": spec.sha256}


def cache_dir(embedder_id: str, quantize: str) -> Path:
    return home_dir() / "embedders" / f"{embedder_id}-{quantize}"


def export_embedder(
    model_dir_or_name: str | Path | None = None,
    out_dir: Path | None = None,
    *,
    quantize: str = DEFAULT_QUANTIZATION,
    max_tokens: int | None = None,
    force: bool = False,
) -> ExportReport:
    """Export `model_dir_or_name` to `out_dir` (default: the home cache) and check its fidelity.

    An existing export whose embedder.json records the same source, settings and format is
    reused unless `force`. Raises ModelError when the mean cosine to torch is below 0.99.
    """
    if quantize not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization {quantize!r}; valid: {', '.join(QUANTIZATIONS)}")
    model_dir, embedder_id, source = resolve_embedder_source(model_dir_or_name)
    out = Path(out_dir) if out_dir is not None else cache_dir(embedder_id, quantize)
    wanted = {"id": embedder_id, "quantization": quantize, "source": source,
              "export_format": EXPORT_FORMAT, "requested_max_tokens": max_tokens}
    if not force and _cache_matches(out, wanted):
        log.info("reusing exported embedder in %s", out)
        return _report_from(out, seconds=0.0, reused=True)

    if out.exists() and not (out / EMBEDDER_CONFIG).is_file() and any(out.iterdir()):
        raise ModelError(f"{out} exists and is not an embedder directory; pass an empty or new --out")
    started = time.perf_counter()
    st = _load_sentence_transformer(model_dir)
    _check_architecture(st, embedder_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        window = int(max_tokens or st.max_seq_length)
        dim = int(st[0].auto_model.config.hidden_size)
        positions = int(getattr(st[0].auto_model.config, "max_position_embeddings", window))
        if not 0 < window <= positions:
            raise ModelError(f"max_tokens {window} is outside 1..{positions} for {embedder_id}; "
                             "pick a smaller --max-tokens")
        fp32 = staging / "model.fp32.onnx"
        _export_onnx(st, fp32)
        fp32_bytes = fp32.stat().st_size
        quantize_model(fp32, staging / "model.onnx", quantize)
        fp32.unlink()
        _save_tokenizer(st, staging / "tokenizer.json")
        config: dict[str, Any] = {
            **wanted, "dim": dim, "max_tokens": window, "pooling": "mean", "normalise": True,
            "fp32_onnx_bytes": fp32_bytes, "opset": _OPSET,
        }
        write_json_atomic(staging / EMBEDDER_CONFIG, config)
        fidelity = check_fidelity(st, staging)
        write_json_atomic(staging / EMBEDDER_CONFIG, {**config, "fidelity": fidelity.to_json()})
        if fidelity.mean_cosine < MIN_MEAN_COSINE:
            raise ModelError(
                f"exported embedder {embedder_id} ({quantize}) has mean cosine "
                f"{fidelity.mean_cosine:.4f} < {MIN_MEAN_COSINE} to the torch model (min "
                f"{fidelity.min_cosine:.4f}); export with --quantize int8-block32 or none"
            )
        for path in [staging, *staging.iterdir()]:  # mkdtemp/mkstemp create owner-only modes
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _report_from(out, seconds=time.perf_counter() - started, reused=False)


def check_fidelity(st: Any, export_dir: Path, texts: tuple[str, ...] = FIDELITY_TEXTS) -> Fidelity:
    """Cosine of the device path (`OnnxEmbedder`) to the torch model, text by text.

    Texts that fit both windows go through sentence-transformers whole, tokenizer included.
    Longer ones give torch the device's token ids: sentence-transformers keeps the start of a
    long text and the device keeps the end, so their own outputs would differ by design.
    """
    import torch

    device = OnnxEmbedder(export_dir)
    candidate = device.embed(list(texts))
    reference = np.zeros_like(candidate)
    preprocess = getattr(st, "preprocess", None) or st.tokenize
    fits = min(device.max_tokens, int(st.max_seq_length))
    for i, text in enumerate(texts):
        features = dict(preprocess([text]))
        if device.count_tokens(text) > fits:
            enc = device.tokenizer.encode(text)
            features["input_ids"] = torch.tensor([enc.ids], dtype=torch.long)
            features["attention_mask"] = torch.tensor([enc.attention_mask], dtype=torch.long)
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        with torch.no_grad():
            reference[i] = st(features)["sentence_embedding"][0].float().numpy()
    return compare_embeddings(reference, candidate)


def _load_sentence_transformer(model_dir: Path) -> Any:
    for module in ("torch", "sentence_transformers", "onnx", "onnxruntime.quantization"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError("distill", module)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


def _check_architecture(st: Any, embedder_id: str) -> None:
    """The device runs transformer + mean pooling (+ L2 normalise) and nothing else."""
    kinds = [type(module).__name__ for module in st]
    pooling = st[1] if len(kinds) > 1 else None
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None:  # sentence-transformers < 6 keeps one flag per mode
        flags = [m for m in ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens")
                 if getattr(pooling, f"pooling_mode_{m}", False)]
        mode = "mean" if flags == ["mean_tokens"] else flags
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]) or mode != "mean":
        raise ModelError(f"{embedder_id} is {' -> '.join(kinds)} with pooling {mode!r}; the device "
                         "embedder supports only Transformer -> mean Pooling [-> Normalize]")


def _export_onnx(st: Any, path: Path) -> None:
    """Trace the transformer (ids, mask, type ids -> last hidden state) with dynamic axes."""
    import copy

    import torch

    auto_model = copy.deepcopy(st[0].auto_model).eval()
    # Eager attention traces to a smaller graph than SDPA, with identical results.
    auto_model.set_attn_implementation("eager")

    class _HiddenStates(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    # A padded row keeps the mask in the traced graph (an all-ones mask may be optimised away).
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 7592, 2088, 2088, 102]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python bools in the mask code; they are constant for any input
        # shape here, and check_fidelity compares the result against torch anyway.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index")  # indices are never negative
        torch.onnx.export(
            _HiddenStates(auto_model), (), str(path),
            kwargs={"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)},
            input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
            opset_version=_OPSET, dynamo=False,
        )


def _save_tokenizer(st: Any, path: Path) -> None:
    from tokenizers import Tokenizer

    # Clone: the transformers tokenizer mutates its backend's truncation/padding per call.
    tokenizer = Tokenizer.from_str(st.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.save(str(path), pretty=False)


def _cache_matches(out: Path, wanted: dict[str, Any]) -> bool:
    try:
        config = json.loads((out / EMBEDDER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not all((out / name).is_file() for name in ("model.onnx", "tokenizer.json")):
        return False
    if "fidelity" not in config:
        return False
    return all(config.get(key) == value for key, value in wanted.items())


def _report_from(out: Path, *, seconds: float, reused: bool) -> ExportReport:
    config = json.loads((out / EMBEDDER_CONFIG).read_text(encoding="utf-8"))
    fidelity = config["fidelity"]
    return ExportReport(
        out_dir=out, id=config["id"], dim=int(config["dim"]), max_tokens=int(config["max_tokens"]),
        quantization=config["quantization"], onnx_bytes=(out / "model.onnx").stat().st_size,
        fp32_onnx_bytes=int(config["fp32_onnx_bytes"]), min_cosine=float(fidelity["min_cosine"]),
        mean_cosine=float(fidelity["mean_cosine"]), n_texts=int(fidelity["n_texts"]),
        seconds=round(seconds, 2), ms_per_query=measure_query_ms(out), reused=reused,
    )


def measure_query_ms(export_dir: Path, tokens: int = 128, repeats: int = 20) -> float:
    """Median milliseconds to embed one query of `tokens` tokens on one thread."""
    embedder = OnnxEmbedder(export_dir, threads=1)
    text = " ".join(["order"] * (tokens - 2))  # one token per word, plus [CLS] and [SEP]
    embedder.embed([text])
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed([text])
        timings.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(timings)), 2)
