"""A small pure-Python reader (and a tiny writer, for tests and fakes) of GGUF headers.

It reads the magic, version, counts, key/value metadata and tensor infos, skipping large arrays
(token lists) without decoding them, so a bad file is caught before llama.cpp sees it. It does not
read or interpret tensor data.
"""

from __future__ import annotations

import enum
import mmap
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import ModelError

__all__ = [
    "GGUF_MAGIC",
    "GGUFArray",
    "GGUFError",
    "GGUFInfo",
    "GGUFTensor",
    "GGUFType",
    "read_gguf",
    "write_gguf",
]

GGUF_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
# Arrays with more elements than this are summarised (type and count), not decoded.
_MAX_DECODED_ARRAY = 64
_FIX = "fetch or install the model file again"
_NOT_GGUF_FIX = "pass a .gguf model file (llama.cpp format)"


class GGUFError(ModelError):
    """A file is not a readable GGUF.

    `reason` is one of: bad_magic, truncated, corrupt, unsupported; `detail` is the message without
    the generic fix, so callers that know the model's source can name a better one.
    """

    def __init__(self, path: Path, detail: str, reason: str, fix: str = _FIX) -> None:
        super().__init__(f"{path}: {detail}; {fix}")
        self.path = path
        self.detail = detail
        self.reason = reason
        self.fix = fix


class GGUFType(enum.IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_SCALAR_FORMATS: dict[int, str] = {
    GGUFType.UINT8: "<B",
    GGUFType.INT8: "<b",
    GGUFType.UINT16: "<H",
    GGUFType.INT16: "<h",
    GGUFType.UINT32: "<I",
    GGUFType.INT32: "<i",
    GGUFType.FLOAT32: "<f",
    GGUFType.BOOL: "<?",
    GGUFType.UINT64: "<Q",
    GGUFType.INT64: "<q",
    GGUFType.FLOAT64: "<d",
}
_SCALARS: dict[int, struct.Struct] = {k: struct.Struct(v) for k, v in _SCALAR_FORMATS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# ggml tensor type id -> (elements per block, bytes per block), after ggml's GGML_QUANT_SIZES.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8),
    28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}


@dataclass(frozen=True)
class GGUFArray:
    """A metadata array too long to decode (e.g. the token list): its element type and length."""

    type: GGUFType
    count: int


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section
    nbytes: int | None  # None for a ggml type this reader does not know


T = TypeVar("T")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Meta(Generic[T]):
    """A metadata value of GGUFInfo, converted (None where absent or of another type)."""

    def __init__(self, key: str, convert: Callable[[Any], T]) -> None:
        self.key, self.convert = key, convert

    def __get__(self, info: GGUFInfo | None, owner: type | None = None) -> T:
        return self.convert(None if info is None else info.metadata.get(self.key))


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a GGUF file says, plus the file size it implies."""

    path: Path
    version: int
    tensor_count: int
    metadata: Mapping[str, Any]
    tensors: tuple[GGUFTensor, ...]
    alignment: int
    data_offset: int
    file_size: int
    # Smallest file size that holds every tensor; None when a tensor type is unknown.
    min_file_size: int | None = field(default=None)

    @property
    def kv_count(self) -> int:
        return len(self.metadata)

    name = _Meta("general.name", _str_or_none)
    architecture = _Meta("general.architecture", _str_or_none)
    chat_template = _Meta("tokenizer.chat_template", _str_or_none)
    bos_token_id = _Meta("tokenizer.ggml.bos_token_id", _int_or_none)
    eos_token_id = _Meta("tokenizer.ggml.eos_token_id", _int_or_none)

    @property
    def context_length(self) -> int | None:
        if self.architecture is None:
            return None
        return _int_or_none(self.metadata.get(f"{self.architecture}.context_length"))


class _Cursor:
    """Bounds-checked little-endian reads over a buffer; every overrun is a GGUFError."""

    def __init__(self, buf: bytes | mmap.mmap, path: Path) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(
                self.path,
                f"truncated: the GGUF header ends while reading {what} (byte {self.pos} of {self.size})",
                "truncated",
            )

    def scalar(self, kind: int, what: str) -> Any:
        st = _SCALARS[kind]
        self._need(st.size, what)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def u32(self, what: str) -> int:
        return int(self.scalar(GGUFType.UINT32, what))

    def u64(self, what: str) -> int:
        return int(self.scalar(GGUFType.UINT64, what))

    def string(self, what: str) -> str:
        n = self.u64(f"the length of {what}")
        self._need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(self.path, f"corrupt: {what} is not valid UTF-8", "corrupt") from None

    def skip_string(self, what: str) -> None:
        n = self.u64(f"the length of {what}")
        self._need(n, what)
        self.pos += n

    def value_type(self, what: str) -> GGUFType:
        raw = self.u32(f"the type of {what}")
        try:
            return GGUFType(raw)
        except ValueError:
            raise GGUFError(
                self.path, f"corrupt or too new: {what} has unknown GGUF value type {raw}", "corrupt"
            ) from None

    def value(self, kind: GGUFType, what: str) -> Any:
        if kind == GGUFType.STRING:
            return self.string(what)
        if kind == GGUFType.ARRAY:
            return self.array(what)
        return self.scalar(kind, what)

    def array(self, what: str) -> list[Any] | GGUFArray:
        elem = self.value_type(f"the elements of {what}")
        count = self.u64(f"the length of {what}")
        if elem in _SCALARS:
            width = _SCALARS[elem].size
            self._need(count * width, what)
            if count > _MAX_DECODED_ARRAY:
                self.pos += count * width
                return GGUFArray(elem, count)
            return [self.scalar(elem, what) for _ in range(count)]
        # Each string or nested array takes at least 8 bytes: reject absurd counts up front.
        self._need(count * 8, what)
        if count > _MAX_DECODED_ARRAY:
            if elem == GGUFType.STRING:
                self._skip_strings(count, what)
            else:
                for _ in range(count):
                    self._skip_value(elem, what)
            return GGUFArray(elem, count)
        return [self.value(elem, what) for _ in range(count)]

    def _skip_strings(self, count: int, what: str) -> None:
        # The hot loop of a header read (tens of thousands of tokens): kept free of method calls.
        pos, buf, unpack = self.pos, self.buf, _U64.unpack_from
        try:
            for _ in range(count):
                pos += 8 + unpack(buf, pos)[0]
        except struct.error:
            pos = self.size + 1
        if pos > self.size:
            self.pos = min(pos, self.size)
            self._need(1, what)
        self.pos = pos

    def _skip_value(self, kind: GGUFType, what: str) -> None:
        if kind == GGUFType.STRING:
            self.skip_string(what)
        elif kind == GGUFType.ARRAY:
            elem = self.value_type(f"the elements of {what}")
            count = self.u64(f"the length of {what}")
            if elem in _SCALARS:
                self._need(count * _SCALARS[elem].size, what)
                self.pos += count * _SCALARS[elem].size
            else:
                self._need(count * 8, what)
                for _ in range(count):
                    self._skip_value(elem, what)
        else:
            width = _SCALARS[kind].size
            self._need(width, what)
            self.pos += width


def _tensor_nbytes(shape: Sequence[int], ggml_type: int) -> int | None:
    block = _GGML_BLOCKS.get(ggml_type)
    if block is None:
        return None
    elements = 1
    for dim in shape:
        elements *= dim
    per_block, block_bytes = block
    return (elements // per_block) * block_bytes


def _align(offset: int, alignment: int) -> int:
    return offset + (-offset) % alignment


def read_gguf(path: Path | str, *, read_tensors: bool = True) -> GGUFInfo:
    """Parse the header of the GGUF file at `path`; raise GGUFError naming what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            file_size = fh.seek(0, 2)
            if file_size < 4:
                raise GGUFError(path, f"not a GGUF file ({file_size} bytes)", "bad_magic", _NOT_GGUF_FIX)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, path, file_size, read_tensors)
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model file ({err.strerror or err})") from err


def _parse(buf: mmap.mmap, path: Path, file_size: int, read_tensors: bool) -> GGUFInfo:
    cur = _Cursor(buf, path)
    magic = bytes(buf[:4])
    if magic != GGUF_MAGIC:
        raise GGUFError(
            path, f"not a GGUF file (starts with {magic!r}, expected b'GGUF')", "bad_magic", _NOT_GGUF_FIX
        )
    cur.pos = 4
    version = cur.u32("the version")
    if version not in (2, 3):
        if version == 1:
            hint = "GGUF v1 is no longer read by llama.cpp; convert the model again"
        elif struct.unpack("<I", struct.pack(">I", version))[0] in (2, 3):
            hint = "it is a big-endian GGUF; use the little-endian build of the model"
        else:
            hint = "the file is corrupt or from a newer GGUF version"
        raise GGUFError(path, f"unsupported GGUF version {version}", "unsupported", hint)
    tensor_count = cur.u64("the tensor count")
    kv_count = cur.u64("the metadata count")
    # Every key/value and tensor info takes more than 8 bytes, so larger counts mean garbage.
    if (kv_count + tensor_count) * 8 > file_size:
        raise GGUFError(
            path,
            f"truncated or corrupt: the GGUF header claims {kv_count} metadata keys and {tensor_count} "
            f"tensors, more than a {file_size}-byte file can hold",
            "truncated",
        )
    metadata: dict[str, Any] = {}
    for i in range(kv_count):
        key = cur.string(f"metadata key #{i}")
        kind = cur.value_type(f"metadata '{key}'")
        metadata[key] = cur.value(kind, f"metadata '{key}'")

    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment % 8:
        raise GGUFError(path, f"corrupt: invalid general.alignment {alignment!r}", "corrupt")

    tensors: list[GGUFTensor] = []
    min_file_size: int | None = None
    data_offset = 0
    if read_tensors:
        for i in range(tensor_count):
            name = cur.string(f"the name of tensor #{i}")
            n_dims = cur.u32(f"the rank of tensor '{name}'")
            if n_dims > 8:
                raise GGUFError(path, f"corrupt: tensor '{name}' has rank {n_dims}", "corrupt")
            shape = tuple(cur.u64(f"the shape of tensor '{name}'") for _ in range(n_dims))
            ggml_type = cur.u32(f"the type of tensor '{name}'")
            offset = cur.u64(f"the offset of tensor '{name}'")
            tensors.append(GGUFTensor(name, shape, ggml_type, offset, _tensor_nbytes(shape, ggml_type)))
        data_offset = _align(cur.pos, alignment)
        end = data_offset
        known = True
        for t in tensors:
            if t.nbytes is None:
                known = False
                end = max(end, data_offset + t.offset)
            else:
                end = max(end, data_offset + t.offset + t.nbytes)
        min_file_size = end if known else None
        if end > file_size:
            raise GGUFError(
                path, f"truncated: its tensors need {end} bytes but the file has {file_size}", "truncated"
            )
    return GGUFInfo(
        path=path,
        version=version,
        tensor_count=tensor_count,
        metadata=metadata,
        tensors=tuple(tensors),
        alignment=alignment,
        data_offset=data_offset,
        file_size=file_size,
        min_file_size=min_file_size,
    )


# --- writer: enough of GGUF to make small valid (or deliberately broken) files for tests ---


def _infer_type(value: Any) -> GGUFType:
    if isinstance(value, bool):
        return GGUFType.BOOL
    if isinstance(value, int):
        return GGUFType.UINT32 if 0 <= value < 2**32 else GGUFType.INT64
    if isinstance(value, float):
        return GGUFType.FLOAT32
    if isinstance(value, str):
        return GGUFType.STRING
    if isinstance(value, (list, tuple)):
        return GGUFType.ARRAY
    raise TypeError(f"cannot store {type(value).__name__} in GGUF metadata")


def _encode_value(kind: GGUFType, value: Any, elem: GGUFType | None = None) -> bytes:
    if kind == GGUFType.STRING:
        raw = str(value).encode("utf-8")
        return _U64.pack(len(raw)) + raw
    if kind == GGUFType.ARRAY:
        items = list(value)
        if elem is None:
            elem = _infer_type(items[0]) if items else GGUFType.UINT32
        body = b"".join(_encode_value(elem, item) for item in items)
        return _U32.pack(elem) + _U64.pack(len(items)) + body
    return _SCALARS[kind].pack(value)


def write_gguf(
    path: Path | str,
    metadata: Mapping[str, Any],
    tensors: Sequence[tuple[str, Sequence[int], int]] = (),
    *,
    version: int = 3,
    alignment: int = _DEFAULT_ALIGNMENT,
) -> Path:
    """Write a small GGUF file: metadata values typed from Python (or given as (GGUFType, value)
    or (GGUFType.ARRAY, element GGUFType, list)), tensors as (name, shape, ggml type) zero-filled."""
    out = bytearray(GGUF_MAGIC + _U32.pack(version) + _U64.pack(len(tensors)) + _U64.pack(len(metadata)))
    for key, value in metadata.items():
        elem: GGUFType | None = None
        if isinstance(value, tuple) and value and isinstance(value[0], GGUFType):
            if value[0] == GGUFType.ARRAY and len(value) == 3:
                kind, elem, value = value
            else:
                kind, value = value
        else:
            kind = _infer_type(value)
        out += _encode_value(GGUFType.STRING, key) + _U32.pack(kind) + _encode_value(kind, value, elem)
    offset = 0
    sizes: list[int] = []
    for name, shape, ggml_type in tensors:
        nbytes = _tensor_nbytes(shape, ggml_type)
        if nbytes is None:
            raise ValueError(f"unknown ggml type {ggml_type}")
        out += _encode_value(GGUFType.STRING, name) + _U32.pack(len(shape))
        out += b"".join(_U64.pack(d) for d in shape) + _U32.pack(ggml_type) + _U64.pack(offset)
        sizes.append(nbytes)
        offset = _align(offset + nbytes, alignment)
    out += b"\0" * ((-len(out)) % alignment)
    for i, nbytes in enumerate(sizes):
        out += b"\0" * nbytes
        if i + 1 < len(sizes):
            out += b"\0" * ((-len(out)) % alignment)
    path = Path(path)
    path.write_bytes(bytes(out))
    return path
