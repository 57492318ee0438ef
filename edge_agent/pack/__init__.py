"""Strategy packs, the one artifact the builder ships to the device: everything about the format is here.

- `layout`: file names, format version, what is embedded per row, the file and hash checks
- `manifest`: `Manifest` (typed view of manifest.json) and `PackSettings` (retrieval, prompting, decoding)
- `read`: `load_pack` and `Pack`; `write`: `write_pack`, `build_pack`, `repair_index`, `update_settings`
- `make`: the one lint-gated path from a library to a pack (`make_pack`), `pack verify`

The names below are the public API; `make` is imported on its own (it pulls in lint and the domain
loader, which a device that only reads packs does not need).
"""

from __future__ import annotations

from .layout import EMBEDDER_DIR, FORMAT_NAME, FORMAT_VERSION, MANIFEST, embed_turn_texts, index_text, turn_texts
from .manifest import Manifest, PackSettings
from .read import Pack, load_pack
from .write import BuildReport, build_pack, repair_index, update_settings, write_pack

__all__ = [
    "EMBEDDER_DIR",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "BuildReport",
    "Manifest",
    "Pack",
    "PackSettings",
    "build_pack",
    "embed_turn_texts",
    "index_text",
    "load_pack",
    "repair_index",
    "turn_texts",
    "update_settings",
    "write_pack",
]
