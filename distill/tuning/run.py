"""Wiring for tuning runs (I/O edge): the cached real student, the retriever, the scorer, reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from edge_agent.backends import LLAMA_CPP, GenerationConfig, make_backend
from edge_agent.embedder import Embedder
from edge_agent.files import write_json_atomic
from edge_agent.pack import Pack
from edge_agent.policy import PolicyRule
from edge_agent.retrieval import Retriever
from edge_agent.runtime import RuntimeConfig

from ..roles.cache import CachedChat
from .tune import Candidate, TuneResult, format_table, make_agent_factory

__all__ = ["TuningSetup", "build_tuning", "open_student", "write_report"]


@dataclass
class TuningSetup:
    factory: Callable[[Candidate], Agent]
    scorer: Embedder
    rules: Sequence[PolicyRule]
    student: CachedChat
    model_name: str
    generation: GenerationConfig


def open_student(
    model: str | None, cache_path: Path, n_ctx: int | None = None, runtime: RuntimeConfig | None = None
) -> tuple[CachedChat, GenerationConfig, str]:
    """The registered student (through the backend registry) behind the call cache, and its registry
    decoding defaults."""
    from edge_agent.models import resolve_model

    spec = resolve_model(model)
    student = make_backend(LLAMA_CPP, spec=spec, n_ctx=n_ctx, runtime=runtime)
    return (
        CachedChat(student, cache_path, spec.sha256),
        GenerationConfig().merged(**dict(spec.generation)),
        spec.name,
    )


def build_tuning(
    pack: Pack, model: str | None, cache_path: Path, scorer: Embedder | None = None,
    runtime: RuntimeConfig | None = None,
) -> TuningSetup:
    from .reference import SentenceEmbedder

    student, generation, name = open_student(model, cache_path, runtime=runtime)
    generation = generation.merged(**pack.settings.table("generation"))
    rcfg = pack.settings.retrieval
    retriever = Retriever(pack.open_embedder(), pack.index, pack.strategies, pack.vectors, rcfg)
    rules = pack.rules
    factory = make_agent_factory(student, pack.system_prompt, retriever, generation, rules)
    return TuningSetup(factory, scorer or SentenceEmbedder(), rules, student, name, generation)


def write_report(result: TuneResult, path: Path, extra: Mapping[str, Any] | None = None) -> str:
    """Write `<path>` (JSON) and `<path>.txt` (the table); return the table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = format_table(result)
    write_json_atomic(path, {**dict(extra or {}), **result.to_json()})
    path.with_suffix(".txt").write_text(table + "\n", encoding="utf-8")
    return table


def dumps(result: TuneResult) -> str:
    return json.dumps(result.to_json(), indent=2, sort_keys=True)
