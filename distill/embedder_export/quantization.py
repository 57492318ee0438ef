"""Quantisation recipes for an exported ONNX embedder: fp32 in, a smaller ONNX file out.

Graph edits only (onnx + onnxruntime.quantization); no torch. Which recipe is faithful enough
is decided by `distill.embedder_export.onnx`, which measures each export against the torch model.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.errors import MissingExtraError, ModelError

__all__ = ["QUANTIZATIONS", "quantize_model"]

# none: fp32. int8-per-channel: dynamic int8 MatMuls (one weight scale per output channel,
# activations quantised per call) except the FFN down-projections; fastest on x86.
# int8-block32: int8 weights in blocks of 32 (MatMulNBits, int8 compute), closest to fp32 but
# slower than fp32 on AVX2 CPUs. Both int8 recipes store the word embeddings as int8 rows with
# one scale each. Each export records its measured cosine to torch in embedder.json.
QUANTIZATIONS = ("none", "int8-per-channel", "int8-block32")


class _DropPreprocessHint(logging.Filter):
    """Drops the pre-processing advice onnxruntime logs on the root logger on every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


def quantize_model(fp32_path: Path, out_path: Path, quantize: str) -> None:
    """Write `fp32_path` to `out_path` under one of QUANTIZATIONS."""
    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        _quantize(fp32_path, out_path, quantize)
    finally:
        logging.getLogger().removeFilter(hint)


def _quantize(fp32_path: Path, out_path: Path, quantize: str) -> None:
    import onnx

    if quantize == "none":
        shutil.copyfile(fp32_path, out_path)
        return
    staged = out_path.with_name(out_path.name + ".matmul.onnx")
    if quantize == "int8-per-channel":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # MatMul only: ORT's own Gather quantisation is per-tensor and costs fidelity. The FFN
        # down-projections stay fp32: they read the GELU output, whose long tail makes one uint8
        # scale per call too coarse (min cosine 0.985 -> 0.991 on the fixed set, +11 MB).
        quantize_dynamic(fp32_path, staged, per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=_down_projections(onnx.load(str(fp32_path))))
        model = onnx.load(str(staged))
    elif quantize == "int8-block32":
        if importlib.util.find_spec("onnx_ir") is None:
            raise MissingExtraError("distill", "onnx_ir")
        from onnxruntime.quantization import QuantFormat

        # Importing the quantizer calls logging.basicConfig(level=INFO): undo that, and its
        # per-node INFO lines.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

        # accuracy_level 4: activations are quantised per block of 32 too, int8 compute.
        config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, accuracy_level=4, bits=8,
                                              op_types_to_quantize=("MatMul",),
                                              quant_format=QuantFormat.QOperator)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32_path)), bits=8, block_size=32,
                                         accuracy_level=4, op_types_to_quantize=("MatMul",),
                                         algo_config=config)
        quantizer.process()
        model = quantizer.model.model
    else:
        raise ModelError(f"unknown quantization {quantize!r}; valid: {', '.join(QUANTIZATIONS)}")
    staged.unlink(missing_ok=True)
    _quantize_word_embeddings(model)
    onnx.save(model, str(out_path))


def _down_projections(model: Any) -> list[str]:
    """MatMul nodes whose constant weight narrows its input (in > out features): the FFN outputs."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and len(shapes.get(node.input[1], [])) == 2
            and shapes[node.input[1]][0] > shapes[node.input[1]][1]]


def _quantize_word_embeddings(model: Any) -> None:
    """Store the word-embedding table as int8 rows with one fp32 scale per row, in place.

    Gather(table, ids) becomes Gather(int8 table, ids) * Gather(scales, ids): the largest
    tensor shrinks 4x and each looked-up row keeps its own range.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] not in initializers or "word_embeddings" not in node.name:
            continue
        name, ids, out = node.input[0], node.input[1], node.output[0]
        table = numpy_helper.to_array(initializers[name]).astype(np.float32)
        scale = np.abs(table).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        rows = np.clip(np.round(table / scale[:, None]), -127, 127).astype(np.int8)
        graph.initializer.remove(initializers[name])
        # A private prefix: quantize_dynamic names its own tensors `<input>_scale` and so on.
        p = f"{out}__rows"
        graph.initializer.extend([
            numpy_helper.from_array(rows, f"{name}_int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{name}_row_scale"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{p}_last_axis"),
        ])
        replacement = [
            helper.make_node("Gather", [f"{name}_int8", ids], [f"{p}_int8"], name=f"{node.name}_int8"),
            helper.make_node("Gather", [f"{name}_row_scale", ids], [f"{p}_scale"], name=f"{node.name}_scale"),
            helper.make_node("Unsqueeze", [f"{p}_scale", f"{p}_last_axis"], [f"{p}_scale_col"],
                             name=f"{node.name}_unsqueeze"),
            helper.make_node("Cast", [f"{p}_int8"], [f"{p}_float"], to=TensorProto.FLOAT, name=f"{node.name}_cast"),
            helper.make_node("Mul", [f"{p}_float", f"{p}_scale_col"], [out], name=f"{node.name}_dequant"),
        ]
        position = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate(replacement):
            graph.node.insert(position + offset, new)
        return
    raise ModelError("the exported graph has no word_embeddings Gather to quantise; export with "
                     "--quantize none")
