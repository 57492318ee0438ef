"""Read, validate and write strategy packs: the one module that knows the pack format.

A pack is a directory holding `manifest.json`, `strategies.jsonl` (row i = vector i),
`vectors.npy` (float32, L2-normalised, the source of truth), `index.faiss` (a rebuildable
accelerator) and `embedder/` (ONNX model + tokenizer). Loading checks everything, the settings
included (`edge_agent.manifest`), and raises `PackError` with one line naming the failed field and
the fix. Nothing here is ever pickled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import __version__
from .conversation import parse_transcript, query_text, request_of
from .embedder import EMBEDDER_CONFIG, Embedder, HashEmbedder, OnnxEmbedder
from .errors import ConfigError, PackError
from .files import is_lfs_pointer, sha256_file, write_json_atomic
from .index import FAISS_MIN_ROWS, ExactIndex, FaissIndex, VectorIndex, build_faiss, faiss_header
from .library import Strategy, parse_strategy_line, text_lines
from .manifest import Manifest, PackSettings
from .outdir import check_destination, install_dir
from .policy import PolicyRule
from .rendering import clean_exemplar

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Manifest",
    "Pack",
    "PackSettings",
    "load_pack",
    "write_pack",
    "build_pack",
    "BuildReport",
    "index_text",
    "repair_index",
    "update_settings",
]

FORMAT_NAME = "edge-agent-pack"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "manifest.json"
STRATEGIES = "strategies.jsonl"
VECTORS = "vectors.npy"
INDEX = "index.faiss"
# Per strategy: [its scenario's last customer message, its exemplar reply], embedded at build time so
# the turn planner can tell whether an entry answers the latest message without re-embedding.
TURN_VECTORS = "turn_vectors.npy"
EMBEDDER_DIR = "embedder"
REBUILD_HINT = "rebuild it with: edge-agent pack build"


@dataclass
class Pack:
    """A loaded, validated pack."""

    path: Path
    manifest: Manifest
    strategies: list[Strategy]
    vectors: np.ndarray
    index: VectorIndex
    turn_vectors: np.ndarray | None = None  # (rows, 2, dim); None for packs built before it existed

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def system_prompt(self) -> str:
        return self.manifest.system_prompt

    @property
    def settings(self) -> PackSettings:
        return self.manifest.settings

    @property
    def rules(self) -> list[PolicyRule]:
        """The policy rules the pack was built with."""
        return self.manifest.rules

    @property
    def embedder_info(self) -> dict[str, Any]:
        return dict(self.manifest.embedder)

    def open_embedder(self, threads: int | None = None) -> Embedder:
        """The embedder this pack was built with (the only one whose queries match its vectors)."""
        info = self.embedder_info
        if info.get("kind") == "hash":
            return HashEmbedder(dim=int(info["dim"]), seed=int(info.get("seed", 0)), id=info["id"])
        return OnnxEmbedder(self.path / EMBEDDER_DIR, threads=threads)

    def exact_index(self) -> ExactIndex:
        return ExactIndex(self.vectors)


def index_text(strategy: Strategy, query_turns: int) -> str:
    """The text embedded for a strategy: the recent end of its scenario, built like a query."""
    return query_text(parse_transcript(strategy.scenario), query_turns)


def turn_texts(strategy: Strategy) -> tuple[str, str]:
    """(the scenario's open customer request, the exemplar without its speaker label); "" if absent."""
    last = request_of(parse_transcript(strategy.scenario))
    return last.strip(), " ".join(clean_exemplar(strategy.exemplar).split())


def embed_turn_texts(strategies: Sequence[Strategy], embedder: Embedder,
                     reuse: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Turn vectors for every strategy (zeros where a text is empty); texts in `reuse` are not embedded."""
    out = np.zeros((len(strategies), 2, embedder.dim), dtype=np.float32)
    for i, s in enumerate(strategies):
        for j, text in enumerate(turn_texts(s)):
            if not text:
                continue
            if reuse is not None and text in reuse:
                out[i, j] = reuse[text]
            else:
                out[i, j] = embedder.embed([text])[0]
    return out


def _fail(msg: str) -> PackError:
    return PackError(msg)


def _check_unique_ids(ids: Sequence[str], where: str) -> None:
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise _fail(f"strategy ids must be unique within a pack, but {where} repeats {', '.join(dupes[:5])}; "
                    "give each strategy its own id")


def _inside(root: Path, rel: Any) -> Path:
    """`root / rel`, after refusing a manifest path that could leave the pack directory."""
    text = str(rel)
    parts = text.replace("\\", "/").split("/")
    if not isinstance(rel, str) or not text or Path(text).is_absolute() or text.startswith(("/", "\\")) \
            or ".." in parts or ":" in parts[0]:
        raise _fail(f"pack {root}: manifest.files names {text!r}, a path outside the pack; every file must "
                    f"lie inside the pack directory; {REBUILD_HINT}")
    path = root / text
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        raise _fail(f"pack {root}: manifest.files entry {text!r} resolves outside the pack (a symbolic link?); "
                    f"{REBUILD_HINT}") from None
    return path


def _check_file(root: Path, rel: str, entry: Mapping[str, Any], verify_hashes: bool) -> None:
    path = _inside(root, rel)
    if not isinstance(entry, Mapping):
        raise _fail(f"pack {root}: manifest.files[{rel!r}] must be an object with sha256 and bytes; {REBUILD_HINT}")
    if not path.is_file():
        raise _fail(f"pack {root}: file '{rel}' is missing; {REBUILD_HINT}")
    if is_lfs_pointer(path):
        raise _fail(
            f"pack {root}: '{rel}' is a Git-LFS pointer, not the file; run 'git lfs pull' or {REBUILD_HINT}"
        )
    size = path.stat().st_size
    expected = entry.get("bytes")
    if isinstance(expected, int) and size != expected:
        what = "truncated" if size < expected else "larger than recorded"
        raise _fail(f"pack {root}: '{rel}' is {what} ({size} of {expected} bytes); {REBUILD_HINT}")
    if verify_hashes and sha256_file(path) != entry.get("sha256"):
        raise _fail(f"pack {root}: sha256 of '{rel}' does not match manifest.files; the file changed "
                    f"after the build; {REBUILD_HINT}")


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise _fail(f"pack directory {root} not found; build one with: edge-agent pack build")
    path = root / MANIFEST
    if not path.is_file():
        raise _fail(f"pack {root}: file '{MANIFEST}' is missing; {REBUILD_HINT}")
    if is_lfs_pointer(path):
        raise _fail(f"pack {root}: '{MANIFEST}' is a Git-LFS pointer; run 'git lfs pull' or {REBUILD_HINT}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"pack {root}: '{MANIFEST}' is not valid JSON ({exc}); {REBUILD_HINT}") from None
    if not isinstance(manifest, dict):
        raise _fail(f"pack {root}: '{MANIFEST}' must be a JSON object; {REBUILD_HINT}")
    if manifest.get("format") != FORMAT_NAME:
        raise _fail(f"pack {root}: manifest.format is {manifest.get('format')!r}, expected "
                    f"{FORMAT_NAME!r}; this is not an edge-agent pack")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise _fail(f"pack {root}: manifest.format_version {version!r} is not supported by edge-agent "
                    f"{__version__} (supports {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade "
                    "edge-agent or rebuild the pack with this version")
    for key in ("embedder", "counts", "files"):
        if not isinstance(manifest.get(key), dict):
            raise _fail(f"pack {root}: manifest.{key} is missing or not an object; {REBUILD_HINT}")
    return manifest


def _typed_manifest(root: Path, raw: Mapping[str, Any]) -> Manifest:
    """The manifest with its settings checked: a bad one fails here, not at chat time."""
    try:
        return Manifest(raw)
    except ConfigError as exc:
        raise _fail(f"pack {root}: {exc}; fix it in {MANIFEST} or {REBUILD_HINT}") from None


def _read_vectors(root: Path, expected_rows: int, dim: int) -> np.ndarray:
    try:
        vectors = np.load(root / VECTORS, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(f"pack {root}: '{VECTORS}' cannot be read ({str(exc)[:100]}), it may be truncated; "
                    f"{REBUILD_HINT}") from None
    if vectors.dtype != np.float32 or vectors.ndim != 2:
        raise _fail(f"pack {root}: '{VECTORS}' must be a 2-D float32 array, got {vectors.dtype} "
                    f"{vectors.shape}; {REBUILD_HINT}")
    if vectors.shape[1] != dim:
        raise _fail(f"pack {root}: dim mismatch: vectors have dim {vectors.shape[1]} but manifest.embedder.dim "
                    f"is {dim}; {REBUILD_HINT}")
    if vectors.shape[0] != expected_rows:
        raise _fail(f"pack {root}: count mismatch: {VECTORS} has {vectors.shape[0]} rows but "
                    f"{STRATEGIES} has {expected_rows} strategies; {REBUILD_HINT}")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.abs(norms - 1.0) < 1e-3):
        raise _fail(f"pack {root}: '{VECTORS}' rows are not L2-normalised; {REBUILD_HINT}")
    return vectors


def load_pack(
    path: Path | str,
    *,
    verify_hashes: bool = True,
    use_faiss: bool | None = None,
    expect_embedder: str | None = None,
) -> Pack:
    """Load and validate a pack; raise PackError naming the failed field and the fix.

    `use_faiss=None` searches with FAISS only for packs of FAISS_MIN_ROWS or more (exact numpy
    search is as fast below that); the index file is validated either way.
    """
    root = Path(path)
    manifest = _typed_manifest(root, _read_manifest(root))
    files: Mapping[str, Any] = manifest.files
    for rel in (STRATEGIES, VECTORS):
        if rel not in files:
            raise _fail(f"pack {root}: manifest.files lacks '{rel}'; {REBUILD_HINT}")
    for rel, entry in sorted(files.items()):
        if rel == INDEX and use_faiss is False:
            continue
        _check_file(root, rel, entry, verify_hashes)

    emb = manifest["embedder"]
    dim = emb.get("dim")
    if not isinstance(dim, int) or dim <= 0:
        raise _fail(f"pack {root}: manifest.embedder.dim must be a positive integer; {REBUILD_HINT}")
    if expect_embedder is not None and emb.get("id") != expect_embedder:
        raise _fail(f"pack {root}: embedder mismatch: pack was built with {emb.get('id')!r} (dim {dim}) but "
                    f"{expect_embedder!r} was asked for; rebuild with: edge-agent pack rebuild --embedder "
                    f"{expect_embedder}")
    if emb.get("kind", "onnx") == "onnx":
        config_path = root / EMBEDDER_DIR / EMBEDDER_CONFIG
        if not config_path.is_file():
            raise _fail(f"pack {root}: file '{EMBEDDER_DIR}/{EMBEDDER_CONFIG}' is missing; {REBUILD_HINT}")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            bundled_dim = int(config.get("dim", -1))
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as exc:
            raise _fail(f"pack {root}: '{EMBEDDER_DIR}/{EMBEDDER_CONFIG}' is not a valid embedder config "
                        f"({type(exc).__name__}: {str(exc)[:80]}); {REBUILD_HINT}") from None
        if config.get("id") != emb.get("id") or bundled_dim != dim:
            raise _fail(f"pack {root}: embedder mismatch: manifest.embedder is {emb.get('id')!r} dim {dim} but "
                        f"the bundled embedder is {config.get('id')!r} dim {config.get('dim')}; {REBUILD_HINT}")

    strategies: list[Strategy] = []
    try:
        lines = text_lines(root / STRATEGIES, REBUILD_HINT)
    except PackError as exc:
        raise _fail(f"pack {root}: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            strategies.append(parse_strategy_line(line, f"pack {root}: {STRATEGIES} line {lineno}"))
    _check_unique_ids([s.id for s in strategies], f"pack {root}: {STRATEGIES}")
    if not strategies:
        raise _fail(f"pack {root}: empty library: {STRATEGIES} has no strategies; add strategies and "
                    f"{REBUILD_HINT}")
    if manifest["counts"].get("strategies") != len(strategies):
        raise _fail(f"pack {root}: count mismatch: manifest.counts.strategies is "
                    f"{manifest['counts'].get('strategies')} but {STRATEGIES} has {len(strategies)}; {REBUILD_HINT}")

    vectors = _read_vectors(root, len(strategies), dim)
    index: VectorIndex = ExactIndex(vectors)
    if use_faiss is not False and INDEX in files:
        _, index_dim, ntotal = faiss_header(root / INDEX)
        if ntotal != vectors.shape[0] or index_dim != dim:
            raise _fail(f"pack {root}: count mismatch: {INDEX} holds {ntotal} vectors of dim {index_dim} but "
                        f"{VECTORS} has {vectors.shape[0]} of dim {dim}; rebuild the index with: "
                        "edge-agent pack verify --repair")
        if use_faiss or vectors.shape[0] >= FAISS_MIN_ROWS:
            index = FaissIndex.load(root / INDEX)
    turn_vectors = None
    if TURN_VECTORS in files:
        try:
            turn_vectors = np.load(root / TURN_VECTORS, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise _fail(f"pack {root}: {TURN_VECTORS} is not a readable .npy file ({exc}); {REBUILD_HINT}") from None
        if turn_vectors.shape != (len(strategies), 2, dim) or turn_vectors.dtype != np.float32:
            raise _fail(f"pack {root}: {TURN_VECTORS} has shape {turn_vectors.shape} {turn_vectors.dtype}, expected "
                        f"({len(strategies)}, 2, {dim}) float32; {REBUILD_HINT}")
    return Pack(path=root, manifest=manifest, strategies=strategies, vectors=vectors, index=index,
                turn_vectors=turn_vectors)


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_pack(
    path: Path | str,
    strategies: Sequence[Strategy],
    vectors: np.ndarray,
    *,
    embedder_info: Mapping[str, Any],
    embedder_dir: Path | None = None,
    domain: Mapping[str, Any] | None = None,
    settings: PackSettings | None = None,
    build: Mapping[str, Any] | None = None,
    index_kind: str = "auto",
    force: bool = False,
    turn_vectors: np.ndarray | None = None,
    data_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write a complete pack atomically (a temporary sibling directory renamed into place).

    The destination must be absent, empty or a pack (see `edge_agent.outdir`); `force` also allows
    a non-empty directory. Nothing in it that is not one of the pack's own files is removed.

    Output is a pure function of the inputs (no timestamps unless `build` carries them), so
    identical inputs give byte-identical packs.
    """
    root = Path(path)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not strategies:
        raise _fail("cannot build a pack from an empty library; add at least one strategy")
    if vectors.shape[0] != len(strategies):
        raise _fail(f"{vectors.shape[0]} vectors for {len(strategies)} strategies; embed every strategy")
    _check_unique_ids([s.id for s in strategies], "the library")
    root = check_destination(root, force=force)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp"))
    try:
        with (tmp / STRATEGIES).open("w", encoding="utf-8") as fh:
            for item in strategies:
                fh.write(json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        np.save(tmp / VECTORS, vectors, allow_pickle=False)
        faiss_index = build_faiss(vectors, kind=index_kind)
        faiss_index.save(tmp / INDEX)
        rels = [STRATEGIES, VECTORS, INDEX]
        if turn_vectors is not None:
            turn = np.ascontiguousarray(turn_vectors, dtype=np.float32)
            if turn.shape != (len(strategies), 2, vectors.shape[1]):
                raise _fail(f"turn vectors have shape {turn.shape}, expected ({len(strategies)}, 2, {vectors.shape[1]})")
            np.save(tmp / TURN_VECTORS, turn, allow_pickle=False)
            rels.append(TURN_VECTORS)
        for rel, src in sorted((data_files or {}).items()):  # the domain's fact-source data
            target = _inside(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            rels.append(rel)
        if embedder_dir is not None:
            shutil.copytree(embedder_dir, tmp / EMBEDDER_DIR)
            rels += sorted(
                f"{EMBEDDER_DIR}/{p.relative_to(tmp / EMBEDDER_DIR).as_posix()}"
                for p in (tmp / EMBEDDER_DIR).rglob("*") if p.is_file()
            )
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "embedder": {**dict(embedder_info), "dim": int(vectors.shape[1]), "normaliser": "l2"},
            "counts": {
                "strategies": len(strategies),
                "vectors": int(vectors.shape[0]),
                "approved": sum(s.status == "approved" for s in strategies),
            },
            "index": {"kind": type(faiss_index.raw).__name__, "metric": "inner_product"},
            "files": {rel: _file_entry(tmp / rel) for rel in rels},
            "domain": dict(domain or {}),
            "settings": (settings or PackSettings()).to_json(),
            "build": {"edge_agent_version": __version__, **dict(build or {})},
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        install_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


@dataclass(frozen=True)
class BuildReport:
    path: Path
    strategies: int
    embedded: int  # rows sent to the embedder
    reused: int  # rows whose vector came from the previous pack


def build_pack(
    path: Path | str,
    strategies: Sequence[Strategy],
    embedder: Embedder,
    *,
    embedder_dir: Path | None = None,
    domain: Mapping[str, Any] | None = None,
    settings: PackSettings | None = None,
    build: Mapping[str, Any] | None = None,
    reuse: Pack | None = None,
    approved_only: bool = False,
    batch_size: int = 1,
    force: bool = False,
    data_files: Mapping[str, Path] | None = None,
) -> "BuildReport":
    """Embed the strategies' scenarios and write a pack; rejected ones never ship, pending ones ship
    unless `approved_only`.

    With `reuse`, rows whose index text and embedder are unchanged take their vector from that
    pack instead of being embedded again (incremental rebuild).
    Texts are embedded one at a time by default: the int8 ONNX embedder quantizes activations per
    batch, so a row's vector would depend on its batch mates (cosine ~0.99), and an incremental
    rebuild would differ from a full one and from how queries are embedded on the device.
    """
    # One rule for every build: rejected strategies never ship; pending ones ship unless approved_only.
    items = [s for s in strategies if s.status != "rejected"]
    if approved_only:
        items = [s for s in items if s.status == "approved"]
    if not items:
        raise _fail("no strategies to pack" + (" (none approved; review them or drop --approved-only)"
                                                 if approved_only else " (none left once rejected ones are "
                                                 "dropped); add or approve strategies in the library"))
    settings = settings or PackSettings()
    query_turns = settings.retrieval.query_turns
    texts = [index_text(s, query_turns) for s in items]
    cached: dict[str, np.ndarray] = {}
    turn_cache: dict[str, np.ndarray] = {}
    same_embedder = reuse is not None and reuse.embedder_info.get("id") == getattr(embedder, "id", None)
    if reuse is not None and same_embedder and reuse.settings.retrieval.query_turns == query_turns:
        for s, row in zip(reuse.strategies, reuse.vectors):
            cached[index_text(s, query_turns)] = row
    if reuse is not None and same_embedder and reuse.turn_vectors is not None:
        for s, pair in zip(reuse.strategies, reuse.turn_vectors):
            for text, vec in zip(turn_texts(s), pair):
                if text:
                    turn_cache[text] = vec
    vectors = np.zeros((len(items), embedder.dim), dtype=np.float32)
    todo = [i for i, t in enumerate(texts) if t not in cached]
    for i, t in enumerate(texts):
        if t in cached:
            vectors[i] = cached[t]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        vectors[chunk] = embedder.embed([texts[i] for i in chunk])
    info: dict[str, Any] = {"id": embedder.id, "kind": "hash" if isinstance(embedder, HashEmbedder) else "onnx"}
    if isinstance(embedder, HashEmbedder):
        info["seed"] = embedder.seed
    elif embedder_dir is not None:
        config = json.loads((Path(embedder_dir) / EMBEDDER_CONFIG).read_text(encoding="utf-8"))
        info.update({k: v for k, v in config.items() if k not in ("id", "dim")})
    turn = embed_turn_texts(items, embedder, turn_cache)
    out = write_pack(path, items, vectors, embedder_info=info, embedder_dir=embedder_dir, domain=domain,
                     settings=settings, build=build, index_kind="flat" if len(items) < 20_000 else "auto",
                     force=force, turn_vectors=turn, data_files=data_files)
    return BuildReport(path=out, strategies=len(items), embedded=len(todo), reused=len(items) - len(todo))


def repair_index(path: Path | str) -> Path:
    """Rebuild `index.faiss` from `vectors.npy` (the source of truth) and update the manifest."""
    root = Path(path)
    manifest = _read_manifest(root)
    files = manifest["files"]
    for rel in (STRATEGIES, VECTORS):
        if rel in files:
            _check_file(root, rel, files[rel], verify_hashes=True)
    vectors = _read_vectors(root, int(manifest["counts"].get("vectors", -1)), int(manifest["embedder"]["dim"]))
    index = build_faiss(vectors, kind="flat" if vectors.shape[0] < 20_000 else "auto")
    index.save(root / INDEX)
    files[INDEX] = _file_entry(root / INDEX)
    manifest["index"] = {"kind": type(index.raw).__name__, "metric": "inner_product"}
    write_json_atomic(root / MANIFEST, manifest)
    return root


def update_settings(
    path: Path | str,
    *,
    retrieval: Mapping[str, Any] | None = None,
    prompting: Mapping[str, Any] | None = None,
    generation: Mapping[str, Any] | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Path:
    """Replace the given settings tables (and the tuning record) in a pack's manifest.

    Only manifest.json changes, so the hashes of the files it lists stay valid.
    """
    root = Path(path)
    manifest = _read_manifest(root)
    settings = dict(manifest.get("settings", {}))
    for key, value in (("retrieval", retrieval), ("prompting", prompting), ("generation", generation)):
        if value is not None:
            settings[key] = dict(value)
    try:
        PackSettings.from_tables(settings)
    except ConfigError as exc:
        raise ConfigError(f"pack {root}: new settings: {exc}") from None
    manifest["settings"] = settings
    if tuning is not None:
        manifest["tuning"] = dict(tuning)
    write_json_atomic(root / MANIFEST, manifest)
    return root
