"""Compact strategy forms: a few plain imperative sentences a small student can follow.

Rule-based by default (headings, markdown and "behaviour to avoid" labels removed, the advice
kept as sentences within a token budget); through any OpenAI-compatible endpoint when one is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from edge_agent.backends import ChatBackend
from edge_agent.library import Strategy
from edge_agent.retrieval import approx_tokens

__all__ = ["COMPACT_INSTRUCTION", "derive_compact", "derive_compact_llm", "fill_compact"]

_EMULATE = re.compile(r"behaviou?r\s+to\s+(?:emulate|follow|adopt)\s*:?\s*", re.IGNORECASE)
_AVOID = re.compile(r"behaviou?r\s+to\s+avoid\s*:?\s*", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s*")
_HEADING = re.compile(
    r"^\s*(?:#+\s*)?(?:guideline list|guidelines?|strategy|strategies)\s*:?\s*$", re.IGNORECASE
)
_TITLE_ONLY = re.compile(r"^\s*(?:\d+[.)]\s*)?\*\*[^*]+\*\*\s*:?\s*$")
COMPACT_INSTRUCTION = (
    "Rewrite the guidance below for a very small assistant model as at most {n} short imperative "
    "sentences on one line. No headings, lists, labels or markdown. Keep only advice for the agent's "
    "next reply.\n\nGuidance:\n{text}"
)


def _plain(line: str) -> str:
    line = _BULLET.sub("", line)
    line = re.sub(r"\*\*([^*]*)\*\*:?", r"\1", line)
    line = re.sub(r"[*_`#]+", "", line)
    return " ".join(line.split()).strip(" -:")


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _avoid(text: str) -> str:
    text = text.strip()
    if re.match(r"(?i)^(?:do not|don't|never|avoid)\b", text):
        return _sentence(text)
    return _sentence("Avoid " + text[0].lower() + text[1:]) if text else ""


_TITLE = re.compile(r"^\s*(?:\d+[.)]|#+)\s*\*{0,2}(.+?)\*{0,2}\s*:?\s*\*{0,2}\s*:?\s*$")
_EXAMPLE = re.compile(r"^(?:good|bad|example|sample)\b[^:]{0,40}:|^[\"\u201c]", re.IGNORECASE)
_ACTION = re.compile(r"^(?:action|do|tip|how)\s*:\s*", re.IGNORECASE)


def _title_sentence(title: str) -> str:
    words = _plain(title).split()
    if not words:
        return ""
    text = " ".join([words[0], *[w if w == "I" or w.isupper() else w.lower() for w in words[1:]]])
    return _sentence(text)


def _items(strategy_text: str) -> list[tuple[str, list[str], list[str]]]:
    """(title, advice lines, avoid lines) per numbered item; unnumbered text is one item."""
    items: list[tuple[str, list[str], list[str]]] = []
    for raw in strategy_text.splitlines():
        if not raw.strip() or _HEADING.match(raw):
            continue
        title = _TITLE.match(raw) if not raw.startswith((" ", "\t")) else None
        if title and (_TITLE_ONLY.match(raw) or raw.rstrip().endswith((":", ":**"))):
            items.append((title.group(1), [], []))
            continue
        if not items:
            items.append(("", [], []))
        line = _plain(raw)
        if _AVOID.search(line):
            rest = _AVOID.split(line, maxsplit=1)[-1]
            if rest and not _EXAMPLE.search(rest):
                items[-1][2].append(_avoid(rest))
        elif _EMULATE.search(line):
            items[-1][1].append(_sentence(_EMULATE.split(line, maxsplit=1)[-1]))
        elif line and not _EXAMPLE.search(line) and not line.endswith(":"):
            items[-1][1].append(_sentence(_ACTION.sub("", line)))
    return items


def derive_compact(
    strategy_text: str,
    max_sentences: int = 4,
    max_tokens: int = 80,
    count: Callable[[str], int] = approx_tokens,
    include_avoid: bool = False,
) -> str:
    """A compact form of a full strategy: one advice sentence per item, within the budget.

    An item's own advice line is preferred; an item made only of example quotes gives its title.
    Quotes are never kept (small students copy them verbatim into unrelated conversations).
    """
    candidates: list[str] = []
    for title, advice, avoid in _items(strategy_text):
        first = advice[0] if advice else _title_sentence(title)
        candidates.append(first)
        if include_avoid and avoid:
            candidates.append(avoid[0])
    picked: list[str] = []
    for s in candidates:
        if not s or s in picked or len(picked) >= max_sentences:
            continue
        if picked and count(" ".join([*picked, s])) > max_tokens:
            continue
        picked.append(s)
    return " ".join(picked)


def derive_compact_llm(strategy_text: str, chat: ChatBackend, max_sentences: int = 3, max_tokens: int = 80) -> str:
    """Compact form written by a chat backend (e.g. `OpenAIChat`), cleaned by the rules."""
    from ..roles.openai_chat import ChatRequest, ask

    prompt = COMPACT_INSTRUCTION.format(n=max_sentences, text=strategy_text.strip())
    result = ask(chat, ChatRequest(messages=[{"role": "user", "content": prompt}], temperature=0.0, max_tokens=160))
    cleaned = " ".join(_plain(line) for line in result.text.splitlines() if line.strip())
    return derive_compact(cleaned, max_sentences=max_sentences, max_tokens=max_tokens) or cleaned


def fill_compact(
    strategies: Sequence[Strategy],
    derive: Callable[[str], str],
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Strategy], int]:
    """Strategies with `compact` filled in (kept where present unless `overwrite`); and how many changed."""
    out: list[Strategy] = []
    changed = 0
    for s in strategies:
        if overwrite or not s.compact.strip():
            compact = derive(s.strategy)
            if compact and compact != s.compact:
                s = s.replace(compact=compact)
                changed += 1
        out.append(s)
        if progress is not None:
            progress(1)
    return out, changed


def iter_compact(texts: Iterable[str]) -> list[str]:
    return [derive_compact(t) for t in texts]
