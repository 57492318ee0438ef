"""The library lifecycle: review, hand edits, diff, policy lint, rebuild without the teacher, export.

Everything here works offline on an existing library or pack; nothing calls the teacher (the
optional LLM lint check talks to whatever OpenAI-compatible endpoint the user names).
"""

from .diff import LibraryDiff, diff_libraries
from .lint import Flag, gate, lint_strategies
from .mobile_bundle import export_mobile
from .rebuild import RebuildResult, rebuild_pack
from .review import Decision, apply_decisions, read_decisions
from .store import Library, open_library, save_library

__all__ = [
    "Decision",
    "Flag",
    "Library",
    "LibraryDiff",
    "RebuildResult",
    "apply_decisions",
    "diff_libraries",
    "export_mobile",
    "gate",
    "lint_strategies",
    "open_library",
    "read_decisions",
    "rebuild_pack",
    "save_library",
]
