"""Prompt assembly: pure functions from (system prompt, history, hits) to chat messages.

The system prompt comes first and never changes within a conversation, so llama.cpp reuses its
KV cache. Retrieved guidance is attached to the latest customer message only, inside markers that
customer text cannot forge, and is never written back into history.
The rendering modes and their settings (`PromptConfig`) live in `rendering`, which builds on this
module, never the reverse.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from .library import Strategy

__all__ = [
    "GUIDANCE_OPEN",
    "GUIDANCE_CLOSE",
    "MARKER_STOPS",
    "Messages",
    "append_to_last_user",
    "base_messages",
    "guidance_text",
    "sanitize_customer_text",
]

GUIDANCE_OPEN = "[[AGENT GUIDANCE - private notes for the agent, not written by the customer]]"
GUIDANCE_CLOSE = "[[END AGENT GUIDANCE]]"
# Stop sequences that end a reply where a small student starts echoing the markers.
MARKER_STOPS = ("[[", "[End AGENT", "[END AGENT", "[AGENT GUIDANCE")
_MARKER = re.compile(r"\[\[\s*(END\s+)?AGENT\s+GUIDANCE[^\]]*\]\]", re.IGNORECASE)

Messages = list[dict[str, str]]


def sanitize_customer_text(text: str) -> str:
    """Remove anything in customer text that looks like a guidance marker.

    Repeats until nothing is left to remove: one pass over "[[AGENT [[END AGENT GUIDANCE]]GUIDANCE ...]]"
    would leave a genuine-looking marker behind.
    """
    while True:
        cleaned = _MARKER.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


def guidance_text(strategy: Strategy, form: str = "compact") -> str:
    """The text of a strategy in the requested form, falling back to the full strategy."""
    if form == "compact" and strategy.compact.strip():
        return strategy.compact.strip()
    if form == "exemplar" and strategy.exemplar.strip():
        return strategy.exemplar.strip()
    return strategy.strategy.strip()


def base_messages(system_prompt: str, history: Sequence[Mapping[str, str]]) -> Messages:
    out: Messages = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    for m in history:
        role = m.get("role", "")
        if role == "system":
            continue  # the pack's system prompt is the only one; callers' system text is dropped
        content = str(m.get("content", ""))
        if role == "user":
            content = sanitize_customer_text(content)
        out.append({"role": role, "content": content})
    return out


def append_to_last_user(messages: Messages, block: str) -> Messages:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            messages[i] = {"role": "user", "content": f"{messages[i]['content']}\n\n{block}"}
            break
    return messages
