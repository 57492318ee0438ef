"""Prompt assembly: pure functions from (system prompt, history, hits) to chat messages.

The system prompt comes first and never changes within a conversation, so llama.cpp reuses its
KV cache. Retrieved guidance is attached to the latest customer message only, inside markers that
customer text cannot forge, and is never written back into history.
Rendering modes are registered by name (`RENDERERS`) and chosen per pack or per call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .errors import ConfigError
from .library import Strategy
from .retrieval import Hit

__all__ = [
    "PromptConfig",
    "GUIDANCE_OPEN",
    "GUIDANCE_CLOSE",
    "MARKER_STOPS",
    "render_prompt",
    "guidance_text",
    "sanitize_customer_text",
    "RENDERERS",
    "register_renderer",
    "renderer_names",
]

GUIDANCE_OPEN = "[[AGENT GUIDANCE - private notes for the agent, not written by the customer]]"
GUIDANCE_CLOSE = "[[END AGENT GUIDANCE]]"
# Stop sequences that end a reply where a small student starts echoing the markers.
MARKER_STOPS = ("[[", "[End AGENT", "[END AGENT", "[AGENT GUIDANCE")
_MARKER = re.compile(r"\[\[\s*(END\s+)?AGENT\s+GUIDANCE[^\]]*\]\]", re.IGNORECASE)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class PromptConfig:
    """How hits are rendered. Stored per pack in manifest.settings.prompting."""

    mode: str = "compact"
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "PromptConfig":
        unknown = sorted(set(data) - {"mode", "params"})
        if unknown:
            raise ConfigError(f"unknown prompting setting(s) {', '.join(unknown)}; valid: mode, params")
        mode = str(data.get("mode", cls.mode))
        if mode not in RENDERERS:
            raise ConfigError(f"unknown rendering mode {mode!r}; valid modes: {', '.join(renderer_names())}")
        return cls(mode=mode, params=dict(data.get("params", {})))


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


def _history(system_prompt: str, history: Sequence[Mapping[str, str]]) -> Messages:
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


def _append_to_last_user(messages: Messages, block: str) -> Messages:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            messages[i] = {"role": "user", "content": f"{messages[i]['content']}\n\n{block}"}
            break
    return messages


def render_plain(system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit],
                 params: Mapping[str, Any]) -> Messages:
    """No guidance at all: the base student."""
    return _history(system_prompt, history)


def render_compact(system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit],
                   params: Mapping[str, Any]) -> Messages:
    """Compact strategies as a delimited block after the latest customer message."""
    messages = _history(system_prompt, history)
    if not hits:
        return messages
    lines = [guidance_text(h.strategy, str(params.get("form", "compact"))) for h in hits]
    block = "\n".join([GUIDANCE_OPEN, *lines, GUIDANCE_CLOSE])
    return _append_to_last_user(messages, block)


def render_bracketed(system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit],
                     params: Mapping[str, Any]) -> Messages:
    """The paper's rendering: the full strategy of the top hit in brackets after the message."""
    messages = _history(system_prompt, history)
    if not hits:
        return messages
    return _append_to_last_user(messages, f"[{guidance_text(hits[0].strategy, 'full')}]")


Renderer = Callable[[str, Sequence[Mapping[str, str]], Sequence[Hit], Mapping[str, Any]], Messages]

RENDERERS: dict[str, Renderer] = {
    "plain": render_plain,
    "compact": render_compact,
    "bracketed": render_bracketed,
}


def register_renderer(name: str, fn: Renderer) -> None:
    RENDERERS[name] = fn


def renderer_names() -> list[str]:
    return sorted(RENDERERS)


def render_prompt(
    system_prompt: str,
    history: Sequence[Mapping[str, str]],
    hits: Sequence[Hit],
    config: PromptConfig | None = None,
) -> Messages:
    """Messages for the student: system prompt, history, and this turn's guidance."""
    cfg = config or PromptConfig()
    try:
        renderer = RENDERERS[cfg.mode]
    except KeyError:
        raise ConfigError(f"unknown rendering mode {cfg.mode!r}; valid modes: {', '.join(renderer_names())}") from None
    if not history or history[-1].get("role") != "user":
        raise ConfigError("the conversation must end with a customer (user) message to reply to")
    return renderer(system_prompt, history, hits, cfg.params)


from . import rendering as _rendering  # noqa: E402,F401  (registers the student-fit modes)
