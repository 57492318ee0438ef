"""Conversations as plain data: OpenAI-style messages <-> the "CUSTOMER:/AGENT:" transcript text.

Scenarios in a library are transcripts; the device sees messages. Both are turned into retrieval
text by `query_text`, the one function that decides what part of a conversation is embedded;
`request_of` says what the customer is asking for now.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

__all__ = ["parse_transcript", "render_transcript", "query_text", "request_of", "ROLE_LABELS", "ANSWER_WORDS"]

ROLE_LABELS = {"user": "CUSTOMER", "assistant": "AGENT"}
_LABEL_ROLES = {v: k for k, v in ROLE_LABELS.items()}
_TURN = re.compile(r"^(CUSTOMER|AGENT)\s*:\s*", re.MULTILINE)


def parse_transcript(text: str) -> list[dict[str, str]]:
    """Split "CUSTOMER: ...\\n\\nAGENT: ..." text into messages; unlabelled text is one user turn."""
    text = text.strip()
    marks = list(_TURN.finditer(text))
    if not marks:
        return [{"role": "user", "content": text}] if text else []
    out = []
    if marks[0].start() > 0 and text[: marks[0].start()].strip():
        out.append({"role": "user", "content": text[: marks[0].start()].strip()})
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end():end].strip()
        out.append({"role": _LABEL_ROLES[mark.group(1)], "content": body})
    return out


def render_transcript(messages: Sequence[Mapping[str, str]]) -> str:
    """Messages (system ones skipped) as "CUSTOMER: ...\\n\\nAGENT: ..." text."""
    parts = []
    for m in messages:
        label = ROLE_LABELS.get(m.get("role", ""))
        if label:
            parts.append(f"{label}: {str(m.get('content', '')).strip()}")
    return "\n\n".join(parts)


def query_text(messages: Sequence[Mapping[str, str]], last_turns: int = 3) -> str:
    """The text embedded for retrieval: the last `last_turns` customer/agent messages.

    Using the recent end of the conversation keeps the query inside the embedder's window, so the
    newest customer message is always seen (the embedder also truncates from the front).
    `last_turns <= 0` means the whole conversation.
    """
    turns = [m for m in messages if m.get("role") in ROLE_LABELS]
    if last_turns > 0:
        turns = turns[-last_turns:]
    return render_transcript(turns)


ANSWER_WORDS = 16  # a customer line this short, right after the agent asked something, answers it
_ASKS = re.compile(
    r"\?|\b(?:could you|can you|would you|please (?:give|tell|confirm|send)|give me|tell me)\b", re.IGNORECASE
)


def request_of(turns: Sequence[Mapping[str, str]]) -> str:
    """The customer's open request: the last customer line, joined to the one before it when it only
    answers the agent's question ("Sam Jones, AB1 2CD." after "Could I have your name?")."""
    users = [i for i, m in enumerate(turns) if m.get("role") == "user"]
    if not users:
        return ""
    last = str(turns[users[-1]].get("content", "")).strip()
    before = turns[users[-1] - 1] if users[-1] > 0 else {}
    if (len(users) > 1 and len(last.split()) <= ANSWER_WORDS and before.get("role") == "assistant"
            and _ASKS.search(str(before.get("content", "")))):
        return str(turns[users[-2]].get("content", "")).strip() + "\n" + last
    return last
