"""Turns `eval run` options into the runner's parts: domain, pack, endpoints, cache, budget, embedder.

Endpoints come from the domain file's [roles] tables (teacher, customer, judge), overridden by
flags; the simulator and judge fall back to the teacher's endpoint. Kept apart from `cli` so the
click layer stays thin and this stays testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.backends import GenerationConfig
from edge_agent.domain import Domain, load_domain
from edge_agent.errors import ConfigError

from ..config import BudgetSettings, Endpoint, parse_settings, settings_from_domain
from ..roles.budget import Meter
from ..roles.cache import CallCache
from . import conditions
from .cases import CaseSelection, select_cases
from .conditions import GLOBAL_GUIDELINE, parse_condition
from .judges import Verdict
from .records import read_recording, write_recording
from .remote import RoleChat, default_cache_path, make_role, usage_json
from .report import write_report
from .runner import EvalParts, EvalSettings, Progress, run_online, run_replay

__all__ = ["resolve_endpoint", "run_from_options"]

DEFAULT_CONDITIONS = ("base", "pack")
ROLE_OF_FLAG = {"teacher": "teacher", "simulator": "customer", "judge": "judge"}


def resolve_endpoint(domain: Domain, flag: str, opts: Mapping[str, Any]) -> Endpoint | None:
    """The endpoint for one role (None when neither the domain file nor flags give one)."""
    base = settings_from_domain(domain.settings, domain.source or "domain")
    roles = {k: v.model_dump(exclude_none=True) for k, v in base.roles.items()}
    for name, role in ROLE_OF_FLAG.items():
        given = {"base_url": opts.get(f"{name}_url"), "model": opts.get(f"{name}_model"),
                 "api_key_env": opts.get("api_key_env"), "max_tokens": opts.get("role_max_tokens")}
        if role == "judge":
            given["json_mode"] = opts.get("json_mode")
        entry = roles.setdefault(role, {})
        entry.update({k: v for k, v in given.items() if v is not None})
        if entry.get("base_url") and not entry.get("model") and role == "teacher":
            entry["model"] = "default"  # single-model local servers ignore the name
    settings = parse_settings({**base.model_dump(exclude={"roles"}), "roles": roles}, "flags")
    try:
        return settings.endpoint(ROLE_OF_FLAG[flag])
    except ConfigError:
        return None


def _embedder(pack: Any, embedder_dir: Path | None, notes: list[str]) -> Any:
    from edge_agent.cli import default_embedder_dir
    from edge_agent.embedder import OnnxEmbedder

    if embedder_dir is not None:
        return OnnxEmbedder(embedder_dir)
    if pack is not None:
        return pack.open_embedder()
    found = default_embedder_dir()
    if (found / "model.onnx").is_file():
        return OnnxEmbedder(found)
    notes.append("no embedder found: the offline similarity metric is skipped (pass --embedder DIR)")
    return None


def run_from_options(opts: Mapping[str, Any], progress: Progress) -> tuple[dict[str, Any], tuple[Path, Path],
                                                                           list[str]]:
    """Run `eval run` with parsed options; returns (results JSON, written paths, notes for the user)."""
    from edge_agent.bundle import resolve_pack
    from edge_agent.cli import default_pack, demo_dir, runtime_config
    from edge_agent.pack import load_pack

    notes: list[str] = []
    domain = load_domain(opts.get("domain_path") or demo_dir() / "domain.toml")
    conds = tuple(parse_condition(t, model=opts.get("model"), transfer_model=opts.get("transfer_model"))
                  for t in (opts.get("conditions") or DEFAULT_CONDITIONS))
    pack = None
    if any(c.kind in ("pack", "transfer") for c in conds):
        pack = load_pack(resolve_pack(opts.get("pack_path")) or default_pack())
    replaying = opts.get("replay_path") is not None
    if replaying and opts.get("record_path") is not None:
        raise ConfigError("--record and --replay exclude each other; record once online, then replay")
    meter = Meter(budget=BudgetSettings(max_calls=opts.get("budget_calls"), max_tokens=opts.get("budget_tokens")))
    cache = None if opts.get("no_cache") else CallCache(opts.get("cache_path") or default_cache_path())
    roles: dict[str, RoleChat] = {}

    def role(flag: str, json_model: Any = None) -> RoleChat | None:
        ep = resolve_endpoint(domain, flag, opts)
        if ep is None:
            return None
        roles[flag] = make_role(ep, meter=meter, cache=cache, json_model=json_model)
        return roles[flag]

    try:
        need_teacher = not replaying or any(c.kind == "teacher" for c in conds) or opts.get("context") == "own"
        teacher = role("teacher") if need_teacher else None
        simulator = None if replaying else role("simulator")
        judge = None if opts.get("no_judge") else role("judge", Verdict)
        if replaying and judge is not None:
            notes.append(f"judging through {judge.endpoint.base_url} (cached); pass --no-judge to stay offline")
        gen = (lambda r, d: GenerationConfig(temperature=r.endpoint.temperature, max_tokens=r.endpoint.max_tokens)
               if r is not None else d)
        defaults = EvalSettings(conditions=conds)
        settings = EvalSettings(
            conditions=conds, max_turns=opts.get("turns", 3), context=opts.get("context", "reference"),
            baseline=opts.get("baseline"), pass_level=opts.get("pass_level", 4), seed=opts.get("seed", 0),
            judge_turns=not opts.get("no_turn_judge"), guideline=opts.get("guideline") or GLOBAL_GUIDELINE,
            student_generation={"max_tokens": opts["student_max_tokens"]} if opts.get("student_max_tokens") else {},
            simulator_generation=gen(simulator, defaults.simulator_generation),
            teacher_generation=gen(teacher, defaults.teacher_generation),
            judge_generation=gen(judge, defaults.judge_generation))
        parts = EvalParts(domain=domain, pack=pack, simulator=simulator, teacher=teacher, judge=judge,
                          embedder=_embedder(pack, opts.get("embedder_dir"), notes),
                          load_student=conditions.default_student_loader(runtime_config()))
        if replaying:
            result = run_replay(read_recording(opts["replay_path"]), parts, settings, progress)
        else:
            if simulator is None:
                raise ConfigError("online evaluation needs endpoints: pass --teacher-url (and optionally "
                                  "--simulator-url/--judge-url), or replay a recording with --replay FILE")
            selection = CaseSelection(
                personas=opts.get("personas", 8), intents=tuple(opts.get("intents") or ()),
                exclude_intents=tuple(opts.get("exclude_intents") or ()),
                exclude_personas=tuple(opts.get("exclude_personas") or ()), split=opts.get("split", "all"),
                test_share=opts.get("test_share", 0.5), trials=opts.get("trials", 1), seed=opts.get("seed", 0))
            result = run_online(select_cases(domain, selection), parts, settings, progress)
            if opts.get("record_path") is not None and result.references:
                path = write_recording(opts["record_path"], result.references, {
                    "domain": domain.name, "seed": settings.seed, "turns": settings.max_turns,
                    "simulator": simulator.name, "teacher": teacher.name if teacher else None})
                notes.append(f"recorded {len(result.references)} reference conversations to {path}")
        result.meta["usage"] = usage_json(roles, meter)
        result.meta["domain"] = domain.name
        if pack is not None:
            result.meta["pack"] = {"path": str(pack.path), "strategies": len(pack.strategies)}
        data = result.to_json()
        return data, write_report(data, opts.get("out_dir") or Path("eval-out")), notes
    finally:
        for r in roles.values():
            r.close()
        if cache is not None:
            cache.close()

