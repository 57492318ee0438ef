"""Rendering modes: where and in what form retrieved strategies enter the student's prompt.

Every mode is a pure function registered by name in `RENDERERS`; `render_prompt` applies one.
Parts can be combined ("compact+exemplar"). Guidance always rides on this turn's prompt only,
never in stored history; text added to the system prompt goes after the fixed prompt so its KV
prefix stays reusable. Builds on `prompting` (markers, history); nothing here imports a plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .conversation import parse_transcript
from .errors import ConfigError
from .keys import check_keys
from .library import Strategy
from .prompting import (
    GUIDANCE_CLOSE,
    GUIDANCE_OPEN,
    Messages,
    append_to_last_user,
    base_messages,
    guidance_text,
)
from .retrieval import Hit, approx_tokens

__all__ = [
    "PromptConfig",
    "RENDERERS",
    "Renderer",
    "check_mode",
    "register_renderer",
    "render_prompt",
    "renderer_names",
    "revision_prompt",
    "COMBINED_MODES",
    "EXEMPLAR_NOTE",
    "PARTS",
    "SYSTEM_NOTE",
    "clean_exemplar",
    "combine",
    "demo_turn",
    "injected_text",
    "trim_to_tokens",
]

SYSTEM_NOTE = "Notes from experienced agents for your next reply (private, do not quote them):"
EXEMPLAR_NOTE = (
    "Example of a good reply in a similar situation. Answer in your own words and use only "
    "facts from this conversation:"
)
_LABEL = re.compile(r"^\s*(AGENT|ASSISTANT)\s*:\s*", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
DEFAULT_EXEMPLAR_TOKENS = 120

Part = Callable[[Messages, Sequence[Hit], Mapping[str, Any]], Messages]


def clean_exemplar(text: str) -> str:
    """An exemplar reply without its speaker label and with whitespace collapsed per paragraph."""
    text = _LABEL.sub("", text.strip())
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def trim_to_tokens(text: str, budget: int, count: Callable[[str], int] = approx_tokens) -> str:
    """The longest run of whole leading sentences within `budget` tokens (at least one sentence)."""
    if budget <= 0 or count(text) <= budget:
        return text
    sentences = _SENTENCE.split(text)
    kept = [sentences[0]]
    for s in sentences[1:]:
        if count(" ".join([*kept, s])) > budget:
            break
        kept.append(s)
    return " ".join(kept)


def render_plain(system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit],
                 params: Mapping[str, Any]) -> Messages:
    """No guidance at all: the base student."""
    return base_messages(system_prompt, history)


def render_compact(system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit],
                   params: Mapping[str, Any]) -> Messages:
    """Compact strategies as a delimited block after the latest customer message."""
    return _compact_part(base_messages(system_prompt, history), hits, params)


def render_bracketed(system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit],
                     params: Mapping[str, Any]) -> Messages:
    """The paper's rendering: the full strategy of the top hit in brackets after the message."""
    messages = base_messages(system_prompt, history)
    return append_to_last_user(messages, f"[{guidance_text(hits[0].strategy, 'full')}]") if hits else messages


Renderer = Callable[[str, Sequence[Mapping[str, str]], Sequence[Hit], Mapping[str, Any]], Messages]

@dataclass(frozen=True)
class PromptConfig:
    """How hits are rendered. Stored per pack in manifest.settings.prompting."""

    mode: str = "compact"
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "PromptConfig":
        check_keys(data, ("mode", "params"), "prompting settings")
        mode = data.get("mode", cls.mode)
        if not isinstance(mode, str):
            raise ConfigError(f"prompting mode must be a name such as 'compact', got {mode!r}")
        check_mode(mode)
        params = data.get("params", {})
        if not isinstance(params, Mapping):
            raise ConfigError(f"prompting params must be a table of settings, got {type(params).__name__}")
        return cls(mode=mode, params=dict(params))


def register_renderer(name: str, fn: Renderer) -> None:
    """Add a rendering mode of your own (the built-in ones are the `RENDERERS` table, after the modes)."""
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
    check_mode(cfg.mode)
    if not history or history[-1].get("role") != "user":
        raise ConfigError("the conversation must end with a customer (user) message to reply to")
    return RENDERERS[cfg.mode](system_prompt, history, hits, cfg.params)


def check_mode(mode: str) -> None:
    """A one-line error naming the valid modes when `mode` is not one."""
    if mode not in RENDERERS:
        raise ConfigError(f"unknown rendering mode {mode!r}; valid modes: {', '.join(renderer_names())}")


def revision_prompt(
    system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit], params: Mapping[str, Any]
) -> Messages:
    """Ask the student to rewrite a draft (the fitted exemplar) as its next reply (the adapt mode)."""
    draft = str(params.get("draft", "")) or (clean_exemplar(hits[0].strategy.exemplar) if hits else "")
    messages = base_messages(system_prompt, history)
    note = (
        "\n\n[[DRAFT REPLY - written by a colleague for a similar customer; rewrite it so it answers "
        f"my last message, keep what fits and add no new facts]]\n{draft}\n[[END DRAFT REPLY]]"
    )
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last] = {"role": "user", "content": messages[last]["content"] + note}
    return messages


def _exemplar(strategy: Strategy, params: Mapping[str, Any]) -> str:
    text = clean_exemplar(strategy.exemplar) if strategy.exemplar.strip() else ""
    return trim_to_tokens(text, int(params.get("exemplar_tokens", DEFAULT_EXEMPLAR_TOKENS)))


def _form(params: Mapping[str, Any]) -> str:
    return str(params.get("form", "compact"))


def injected_text(strategy: Strategy, mode: str, params: Mapping[str, Any]) -> str:
    """What a mode injects for one strategy: used to price hits against the token budget."""
    parts = mode.split("+")
    pieces = []
    if any(p in ("compact", "system") for p in parts):
        pieces.append(guidance_text(strategy, _form(params)))
    if "bracketed" in parts:
        pieces.append(guidance_text(strategy, "full"))
    # adapt puts no guidance in the generation prompt, so it costs nothing against the budget
    if any(p in ("exemplar", "exemplar_system", "demo") for p in parts):
        pieces.append(_exemplar(strategy, params) or guidance_text(strategy, _form(params)))
    return "\n".join(pieces)


# --- parts: each takes this turn's messages (already copied) and returns them changed ------------
def _system_part(messages: Messages, hits: Sequence[Hit], params: Mapping[str, Any]) -> Messages:
    if not hits:
        return messages
    lines = [f"- {guidance_text(h.strategy, _form(params))}" for h in hits]
    return _add_to_system(messages, "\n".join([SYSTEM_NOTE, *lines]))


def _compact_part(messages: Messages, hits: Sequence[Hit], params: Mapping[str, Any]) -> Messages:
    if not hits:
        return messages
    lines = [guidance_text(h.strategy, _form(params)) for h in hits]
    return append_to_last_user(messages, "\n".join([GUIDANCE_OPEN, *lines, GUIDANCE_CLOSE]))


def _exemplar_part(messages: Messages, hits: Sequence[Hit], params: Mapping[str, Any]) -> Messages:
    example = _exemplar(hits[0].strategy, params) if hits else ""
    if not example:
        return messages
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    content = messages[last]["content"]
    if content.endswith(GUIDANCE_CLOSE):  # one guidance block per turn, even when combined
        merged = content[: -len(GUIDANCE_CLOSE)] + "\n".join([EXEMPLAR_NOTE, example, GUIDANCE_CLOSE])
        return [*messages[:last], {"role": "user", "content": merged}, *messages[last + 1 :]]
    return append_to_last_user(messages, "\n".join([GUIDANCE_OPEN, EXEMPLAR_NOTE, example, GUIDANCE_CLOSE]))


def _exemplar_system_part(messages: Messages, hits: Sequence[Hit], params: Mapping[str, Any]) -> Messages:
    example = _exemplar(hits[0].strategy, params) if hits else ""
    if not example:
        return messages
    return _add_to_system(messages, f"{EXEMPLAR_NOTE}\n{example}")


def demo_turn(strategy: Strategy, params: Mapping[str, Any]) -> Messages:
    """A fake earlier exchange: the scenario's last customer message and the exemplar reply."""
    example = _exemplar(strategy, params)
    turns = [m for m in parse_transcript(strategy.scenario) if m["role"] == "user"]
    if not example or not turns:
        return []
    return [{"role": "user", "content": turns[-1]["content"]}, {"role": "assistant", "content": example}]


def _demo_part(messages: Messages, hits: Sequence[Hit], params: Mapping[str, Any]) -> Messages:
    demo = demo_turn(hits[0].strategy, params) if hits else []
    if not demo:
        return messages
    # Just before the latest customer message: everything earlier keeps its KV-cache prefix.
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return [*messages[:last], *demo, *messages[last:]]


def _add_to_system(messages: Messages, block: str) -> Messages:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{block}"}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


PARTS: dict[str, Part] = {
    "system": _system_part,
    "compact": _compact_part,
    "exemplar": _exemplar_part,
    "exemplar_system": _exemplar_system_part,
    "demo": _demo_part,
}
# System-prompt parts first, then the user-turn parts, then the demonstration turn.
_ORDER = ("system", "exemplar_system", "compact", "exemplar", "demo")
COMBINED_MODES = ("system+exemplar", "compact+exemplar", "compact+demo", "system+demo")


def combine(
    *names: str,
) -> Callable[[str, Sequence[Mapping[str, str]], Sequence[Hit], Mapping[str, Any]], Messages]:
    """A renderer that applies the named parts in a fixed order."""
    ordered = sorted(names, key=_ORDER.index)

    def render(
        system_prompt: str,
        history: Sequence[Mapping[str, str]],
        hits: Sequence[Hit],
        params: Mapping[str, Any],
    ) -> Messages:
        messages = base_messages(system_prompt, history)
        for name in ordered:
            messages = PARTS[name](messages, hits, params)
        return messages

    render.__name__ = "render_" + "_".join(ordered)
    render.__doc__ = f"Rendering mode {'+'.join(names)}."
    return render


def render_grounded(
    system_prompt: str, history: Sequence[Mapping[str, str]], hits: Sequence[Hit], params: Mapping[str, Any]
) -> Messages:
    """The grounded mode's prompt for a student draft: its fallback mode's (see edge_agent.planner)."""
    return RENDERERS[str(params.get("fallback", "compact"))](system_prompt, history, hits, {})



# Every built-in mode, in one table: name -> renderer.
RENDERERS: dict[str, Renderer] = {
    "plain": render_plain,
    "compact": render_compact,
    "bracketed": render_bracketed,
    **{name: combine(name) for name in ("system", "exemplar", "exemplar_system", "demo")},
    **{combo: combine(*combo.split("+")) for combo in COMBINED_MODES},
    "adapt": revision_prompt,
    "grounded": render_grounded,
}


def cap_tokens(text: str, budget: int, count: Callable[[str], int] = approx_tokens) -> tuple[str, bool]:
    """`text` within `budget` tokens, and whether it was cut: whole sentences while they fit, else whole
    words (as a generating model stops at max_tokens)."""
    if budget <= 0:
        return text, False
    out = trim_to_tokens(text, budget, count)
    cut = out != text
    if count(out) > budget:
        words = out.split()
        while len(words) > 1 and count(" ".join(words)) > budget:
            words.pop()
        out, cut = " ".join(words), True
    return out, cut
