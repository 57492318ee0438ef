"""Structured LLM outputs: pydantic models, tolerant JSON extraction and the repair prompt.

Pure functions only. `parse_output` accepts bare JSON or JSON inside a code fence or prose and
raises `MalformedOutput` with a short reason the caller can send back to the model.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "COMPACT_MAX_WORDS",
    "Judgement",
    "MalformedOutput",
    "Situation",
    "Situations",
    "StrategyDraft",
    "StrategyItem",
    "clean_compact",
    "parse_output",
    "repair_messages",
]

COMPACT_MAX_WORDS = 45
_MARKDOWN = re.compile(r"[*_#`>]+|^\s*[-+]\s+|^\s*\d+[.)]\s+", re.MULTILINE)


class MalformedOutput(ValueError):
    """The model's reply is not the JSON object that was asked for."""


def clean_compact(text: str, max_words: int = COMPACT_MAX_WORDS) -> str:
    """Plain imperative sentences for a small student: no markdown, at most `max_words` words.

    Whole sentences are kept while they fit; a single overlong sentence is cut at the limit.
    """
    plain = " ".join(_MARKDOWN.sub(" ", text).split())
    words = plain.split()
    if len(words) <= max_words:
        return plain
    kept: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", plain):
        if len(" ".join(kept + [sentence]).split()) > max_words:
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept)
    return " ".join(words[:max_words]).rstrip(",;:") + "."


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StrategyItem(_Out):
    do: str = Field(min_length=1)
    avoid: str = ""

    @field_validator("do", "avoid")
    @classmethod
    def _strip(cls, v: str) -> str:
        return " ".join(str(v).split())


class StrategyDraft(_Out):
    """The writer's (and merger's) output: what to do and avoid, plus a compact form."""

    items: list[StrategyItem] = Field(min_length=1)
    compact: str = Field(min_length=1)
    # facts the good reply takes as established ("identity_verified", "!within_minimum_term")
    requires: list[str] = Field(default_factory=list)

    @field_validator("compact")
    @classmethod
    def _compact(cls, v: str) -> str:
        return clean_compact(v)

    @field_validator("requires")
    @classmethod
    def _requires(cls, v: list[str]) -> list[str]:
        # malformed names are dropped here; names the domain does not declare are dropped by the caller
        return list(dict.fromkeys(x.strip() for x in v if re.fullmatch(r"!?[a-z][a-z0-9_]*", str(x).strip())))


class Judgement(_Out):
    score: int = Field(ge=1, le=5)
    reason: str = ""


class Situation(_Out):
    """A customer situation proposed by the generator for the next stage."""

    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    customer_goal: str = ""
    opening: str = Field(min_length=1)
    why: str = ""


class Situations(_Out):
    situations: list[Situation] = Field(default_factory=list)


M = TypeVar("M", bound=BaseModel)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _candidates(text: str) -> list[str]:
    out = [text.strip()]
    out += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        out.append(text[start:end + 1])
    return out


def parse_output(text: str, model: type[M]) -> M:
    """The first JSON object in `text` that validates as `model`."""
    reason = "no JSON object found"
    for candidate in _candidates(text):
        try:
            data: Any = json.loads(candidate)
        except json.JSONDecodeError as exc:
            reason = f"invalid JSON ({exc.msg} at char {exc.pos})"
            continue
        if not isinstance(data, dict):
            reason = "expected a JSON object"
            continue
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "object"
            reason = f"field {loc}: {first['msg']}"
    if not text.strip():
        reason = "empty reply"
    elif "{" not in text:
        reason = "no JSON object found"
    raise MalformedOutput(reason)


def repair_messages(messages: list[dict[str, str]], bad_reply: str, reason: str) -> list[dict[str, str]]:
    """The conversation extended with the bad reply and a request to fix it."""
    return [*messages, {"role": "assistant", "content": bad_reply[:2000]},
            {"role": "user", "content": f"That reply could not be used: {reason}. Answer again with only "
                                        "the JSON object, complete and valid, nothing else."}]


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema; free-text `reason` fields get a length bound so a constrained
    decoder (llama.cpp grammar) closes the object within a small token budget."""
    schema = json.loads(json.dumps(model.model_json_schema()))
    reason = schema.get("properties", {}).get("reason")
    if isinstance(reason, dict) and reason.get("type") == "string":
        reason.setdefault("maxLength", 160)
    return schema


def draft_schema(max_items: int, item_chars: int = 200, compact_chars: int = 320) -> dict[str, Any]:
    """StrategyDraft's schema with bounds a constrained decoder can enforce (item count, lengths)."""
    schema = json.loads(json.dumps(StrategyDraft.model_json_schema()))
    schema["properties"]["items"]["maxItems"] = max_items
    schema["properties"]["compact"]["maxLength"] = compact_chars
    if "requires" in schema["properties"]:
        schema["properties"]["requires"]["maxItems"] = 6
        schema["properties"]["requires"].setdefault("items", {"type": "string"})["maxLength"] = 40
    for name in ("do", "avoid"):
        schema["$defs"]["StrategyItem"]["properties"][name]["maxLength"] = item_chars
    return schema
