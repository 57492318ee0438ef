"""Text from outside (a pipe, a request body) made safe to tokenise: valid Unicode, no stray controls.

The tokenizers and llama.cpp take well-formed UTF-8 only; a lone surrogate or an undecodable byte
would surface as a TypeError or UnicodeEncodeError deep inside them. This cleans such text once,
at the edge, and says whether anything was changed.
"""

from __future__ import annotations

import re

__all__ = ["clean_text", "decode_line", "has_lone_surrogate"]

# C0 controls other than tab, line feed and carriage return, plus DEL: never meaningful in a chat.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a surrogate code point (it cannot be encoded as UTF-8)."""
    return _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """`text` with surrogates (including undecodable bytes kept by `surrogateescape`) replaced by
    U+FFFD and control characters other than tab and line breaks removed."""
    return _CONTROLS.sub("", _SURROGATE.sub("\ufffd", text))


def decode_line(raw: bytes) -> str:
    """One line of input bytes as text: invalid UTF-8 becomes U+FFFD instead of an error."""
    return clean_text(raw.decode("utf-8", errors="replace"))
