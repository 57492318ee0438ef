"""Write the mobile bundle: a zip an Android/iOS app can search by brute force, without FAISS.

The format itself (header layout, file names, checks) lives in `edge_agent.mobile`, whose reader
is the reference; this module gathers a pack's parts, drops rejected rows and writes a
byte-reproducible zip (fixed timestamps, sorted entries) with FORMAT.md inside.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.mobile import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    HEADER,
    MANIFEST_FILE,
    STRATEGIES_FILE,
    VECTORS_FILE,
    VECTORS_MAGIC,
    encode_vectors,
)
from edge_agent.pack import EMBEDDER_DIR, Pack

__all__ = ["FORMAT_DOC", "MobileExport", "export_mobile"]

_EPOCH = (1980, 1, 1, 0, 0, 0)
STRATEGY_KEYS = ("id", "scenario", "strategy", "compact", "exemplar", "tags", "source", "status")

FORMAT_DOC = """# edge-agent mobile bundle, format version {version}

This zip holds everything an app needs to pick support strategies on a phone with plain
brute-force search (no FAISS). All JSON is UTF-8; all numbers are little-endian.

## Files

- `manifest.json`: `format` ("{format}"), `format_version` ({version}), `counts`, `embedder`
  (id, kind, dim, max_tokens, pooling, normalise), `settings` (retrieval/prompting/generation as
  in the source pack), `system_prompt`, `query` (how to build the query text), and `files`: the
  sha256 of every other file. Check the hashes before use.
- `strategies.json`: a JSON array; element i describes row i of the vectors. Keys: `id`,
  `scenario`, `strategy` (full guidance), `compact` (short form, may be empty), `exemplar`,
  `tags`, `source`, `status`.
- `vectors.f16`: a {header_size}-byte header followed by `n * dim` IEEE-754 half floats, row-major.
  Header: bytes 0-3 magic `{magic}`; bytes 4-5 uint16 version (1); bytes 6-7 uint16 dtype
  (1 = float16); bytes 8-11 uint32 n (rows); bytes 12-15 uint32 dim. The data starts at byte
  {header_size} (2-byte aligned, so it can be memory-mapped). Rows are L2-normalised before the
  float16 rounding, so their norms are 1 to within about 1e-3.
- `embedder/`: the ONNX sentence embedder (`model.onnx`), its `tokenizer.json` (Hugging Face
  tokenizers format) and `embedder.json` (id, dim, max_tokens, pooling, normalise). Absent when
  the pack used the test-only hash embedder (`embedder.kind` = "hash").
- `FORMAT.md`: this file.

## Searching on the device

1. Query text: the last `query.turns` messages of the conversation (customer and agent, oldest
   first), each rendered as `CUSTOMER: <text>` or `AGENT: <text>`, joined by a blank line.
2. Tokenize with `tokenizer.json`; keep the *last* `max_tokens` tokens (truncate from the left),
   run `model.onnx` (inputs `input_ids`, `attention_mask`, and `token_type_ids` = zeros if the
   model asks for it), mean-pool the first output over the attention mask and L2-normalise.
3. Score every row: the dot product of the query with each row (accumulate in float32).
4. Take the best `settings.retrieval.candidates` rows (ties: lower row first), drop scores under
   `settings.retrieval.threshold`, keep at most `settings.retrieval.top_k`. Show the student the
   `compact` text (or `strategy` when compact is empty) inside the guidance markers the pack's
   prompting mode uses.

The reference reader is `edge_agent.mobile.MobileBundle` (Python, numpy only).
"""


@dataclass(frozen=True)
class MobileExport:
    path: Path
    strategies: int
    dropped_rejected: int
    dim: int
    files: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "strategies": self.strategies, "dropped_rejected": self.dropped_rejected,
                "dim": self.dim, "files": self.files}


def _entry(name: str, data: bytes, zf: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o644 << 16
    # Vectors and the model are stored uncompressed so an app can map them straight from the zip.
    info.compress_type = zipfile.ZIP_STORED if name.endswith((".f16", ".onnx")) else zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _row(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in STRATEGY_KEYS}


def bundle_parts(pack: Pack) -> tuple[dict[str, bytes], dict[str, Any], int]:
    """(file name -> bytes, manifest without `files`, rejected rows dropped)."""
    keep = [i for i, s in enumerate(pack.strategies) if s.status != "rejected"]
    rows = [_row(pack.strategies[i].to_json()) for i in keep]
    vectors = np.asarray(pack.vectors, dtype=np.float32)[keep]
    parts: dict[str, bytes] = {
        STRATEGIES_FILE: (json.dumps(rows, ensure_ascii=False, indent=1) + "\n").encode("utf-8"),
        VECTORS_FILE: encode_vectors(vectors),
        "FORMAT.md": FORMAT_DOC.format(version=BUNDLE_VERSION, format=BUNDLE_FORMAT, header_size=HEADER.size,
                                       magic=VECTORS_MAGIC.decode("ascii")).encode("utf-8"),
    }
    emb_root = pack.path / EMBEDDER_DIR
    if pack.embedder_info.get("kind", "onnx") != "hash" and emb_root.is_dir():
        for p in sorted(emb_root.rglob("*")):
            if p.is_file():
                parts[f"{EMBEDDER_DIR}/{p.relative_to(emb_root).as_posix()}"] = p.read_bytes()
    retrieval = pack.settings.table("retrieval")
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "counts": {"strategies": len(rows)},
        "embedder": {**pack.embedder_info, "dim": int(vectors.shape[1])},
        "settings": pack.settings.to_json(),
        "system_prompt": pack.system_prompt,
        "domain": {k: v for k, v in pack.manifest.domain.items() if k in ("name", "company")},
        "query": {"turns": int(retrieval.get("query_turns", 3)), "labels": {"user": "CUSTOMER", "assistant": "AGENT"},
                  "separator": "\n\n"},
        "vectors": {"file": VECTORS_FILE, "header_bytes": HEADER.size, "dtype": "float16", "byte_order": "little"},
        "source_pack": {"strategies_sha256": pack.manifest.files["strategies.jsonl"]["sha256"],
                        "vectors_sha256": pack.manifest.files["vectors.npy"]["sha256"]},
    }
    return parts, manifest, len(pack.strategies) - len(keep)


def export_mobile(pack: Pack, out: Path) -> MobileExport:
    """Write the bundle zip for `pack` to `out` (atomically; the same pack gives the same bytes)."""
    parts, manifest, dropped = bundle_parts(pack)
    files = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(parts.items())}
    manifest["files"] = files
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            _entry(MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
                   .encode("utf-8"), zf)
            for name in sorted(parts):
                _entry(name, parts[name], zf)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return MobileExport(path=out, strategies=int(manifest["counts"]["strategies"]), dropped_rejected=dropped,
                        dim=int(manifest["embedder"]["dim"]), files=files)
