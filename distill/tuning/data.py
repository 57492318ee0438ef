"""Development data for tuning: conversations with recorded teacher replies, split by conversation.

Rows are JSON objects with `scenario` (a "CUSTOMER: ... AGENT: ..." transcript) or `messages`,
and the reference reply in `teacher_reply`, `reference` or `exemplar`. Pure functions only.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.conversation import parse_transcript
from edge_agent.errors import ConfigError

from .tune import DevItem

__all__ = ["conversation_key", "parse_dev_rows", "read_dev_file", "split_dev"]

_REFERENCE_KEYS = ("teacher_reply", "reference", "exemplar")


def parse_dev_rows(
    rows: Iterable[Mapping[str, Any]], stage: int | None = None, where: str = "dev"
) -> list[DevItem]:
    """DevItems from rows; rows whose conversation does not end with the customer are skipped."""
    items = []
    for i, row in enumerate(rows):
        if stage is not None and row.get("stage") != stage:
            continue
        history = (
            [dict(m) for m in row["messages"]]
            if "messages" in row
            else parse_transcript(str(row.get("scenario", "")))
        )
        reference = next((str(row[k]) for k in _REFERENCE_KEYS if str(row.get(k) or "").strip()), "")
        if not reference:
            raise ConfigError(
                f"{where} row {i + 1} has no teacher_reply/reference; add the recorded teacher reply"
            )
        if not history or history[-1].get("role") != "user":
            continue
        items.append(DevItem(id=str(row.get("id", i)), history=history, reference=reference))
    return items


def read_dev_file(path: Path, stage: int | None = None) -> list[DevItem]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"dev file {path} not found; pass a JSONL file of conversations with teacher replies"
        )
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return parse_dev_rows(rows, stage=stage, where=path.name)


def conversation_key(item: DevItem) -> str:
    """Items from the same conversation share its opening customer message."""
    first = next((m["content"] for m in item.history if m.get("role") == "user"), "")
    return first.strip()[:200]


def split_dev(
    items: Sequence[DevItem], dev_share: float, seed: int = 0
) -> tuple[list[DevItem], list[DevItem]]:
    """(dev, held-out) with whole conversations on one side, chosen by a seeded shuffle."""
    keys = sorted({conversation_key(i) for i in items})
    random.Random(seed).shuffle(keys)
    n_dev = max(1, round(len(keys) * dev_share)) if keys else 0
    dev_keys = set(keys[:n_dev])
    dev = [i for i in items if conversation_key(i) in dev_keys]
    rest = [i for i in items if conversation_key(i) not in dev_keys]
    return dev, rest
