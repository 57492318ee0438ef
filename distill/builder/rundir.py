"""A run directory: its frozen config, the copied domain file, and opening every part of a build.

`init_run` writes `config.json` (settings after flags, student, embedder, cache path; never an
API key) and `domain.toml`; `open_build` turns a run directory into a ready `Build` (backends,
student, embedder, cache, journal, meter restored from what this run already paid for).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.backends import LLAMA_CPP, ChatBackend, make_backend
from edge_agent.domain import Domain, load_domain
from edge_agent.embedder import Embedder, HashEmbedder, OnnxEmbedder
from edge_agent.errors import ConfigError, ModelError
from edge_agent.files import home_dir, write_json_atomic
from edge_agent.pack import PackSettings
from edge_agent.runtime import RuntimeConfig

from ..config import ROLES, RunSettings, parse_settings, settings_from_domain
from ..roles.budget import Meter
from ..roles.cache import CallCache
from ..roles.caller import Caller
from ..roles.openai_chat import OpenAIChat
from ..testing import EchoStudent
from .journal import Journal
from .scenarios import domain_situations
from .student_runner import StudentRunner

__all__ = ["DEFAULT_EMBEDDER", "Build", "default_embedder", "init_run", "open_build", "read_config",
           "update_endpoint"]

CONFIG = "config.json"
DOMAIN = "domain.toml"
JOURNAL = "journal.jsonl"
DEFAULT_EMBEDDER = "all-minilm-l6-v2-int8-per-channel"
EventFn = Callable[[str, Mapping[str, Any]], None]


def default_embedder() -> str:
    return str(home_dir() / "embedders" / DEFAULT_EMBEDDER)


@dataclass
class Build:
    """Everything one build process needs; `loop.run_build` drives it."""

    run_dir: Path
    run_id: str
    domain: Domain
    settings: RunSettings
    caller: Caller
    student: StudentRunner
    student_model: str
    embedder: Embedder
    embedder_dir: Path | None
    journal: Journal
    cache: CallCache
    pack_settings: PackSettings
    on_event: EventFn | None = None
    backends: Mapping[str, ChatBackend] = field(default_factory=dict)

    def emit(self, name: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(name, data)

    def close(self) -> None:
        """Close the role backends (each once) and the journal."""
        for backend in {id(b): b for b in self.backends.values()}.values():
            closer = getattr(backend, "close", None)
            if closer is not None:
                closer()
        self.journal.close()


def init_run(run_dir: Path, domain_path: Path, *, teacher: Mapping[str, Any] | None = None,
             loop: Mapping[str, Any] | None = None, budget: Mapping[str, Any] | None = None,
             student: str = "", embedder: str = "", cache: Path | None = None, run_id: str | None = None,
             teacher_timeout: float | None = None) -> Path:
    """Create a run directory (refusing one that already holds a run: resume that instead)."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG).exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with: edge-agent distill resume {run_dir}")
    domain = load_domain(domain_path)
    settings = settings_from_domain(domain.settings, Path(domain_path).name).with_overrides(
        teacher={**dict(teacher or {}), "timeout_s": teacher_timeout}, loop=loop, budget=budget)
    for role in ROLES:
        settings.endpoint(role)  # fail now, not after the first stage, if a role has no endpoint
    domain_situations(domain, settings.loop.intents)  # and if --intents names one the domain lacks
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DOMAIN).write_text(Path(domain_path).read_text(encoding="utf-8"), encoding="utf-8")
    for name in _side_files(domain):  # the run reads its own copies of the files the domain names
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes((domain.base_dir or Path.cwd()).joinpath(name).read_bytes())
    config = {
        "run_id": run_id or time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "domain_source": Path(domain_path).name,
        "settings": json.loads(settings.model_dump_json()),
        "student": student,
        "embedder": embedder or default_embedder(),
        "cache": str(cache or home_dir() / "distill" / "cache.sqlite"),
    }
    write_json_atomic(run_dir / CONFIG, config)
    return run_dir


def update_endpoint(run_dir: Path, teacher: Mapping[str, Any]) -> dict[str, Any]:
    """Save new teacher endpoint fields (None: unchanged) in the run's config; returns what changed.

    Used by `distill resume --teacher-url ...` after the endpoint the run started with went away.
    The new settings are validated before anything is written.
    """
    config = read_config(run_dir)
    roles = config["settings"].setdefault("roles", {})
    current = roles.setdefault("teacher", {})
    changed = {k: v for k, v in teacher.items() if v is not None and current.get(k) != v}
    if not changed:
        return {}
    current.update(changed)
    parse_settings(config["settings"], "flags").endpoint("teacher")
    config.setdefault("endpoint_changes", []).append(
        {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "teacher": dict(changed)})
    write_json_atomic(Path(run_dir) / CONFIG, config)
    return changed


def _side_files(domain: Domain) -> list[str]:
    """Files next to the domain file that loading it needs: its policy digest and fact-source data."""
    names = [str(domain.digest_info["file"])] if domain.digest_info.get("file") else []
    data = domain.fact_source.get("data")
    if data and not Path(str(data)).is_absolute():
        if ".." in Path(str(data)).parts:
            raise ConfigError(f"{domain.source} [fact_source]: data {data} is outside the domain's folder; keep it "
                              "next to the domain file (or give an absolute path) so a run can copy it")
        names.append(str(data))
    return names


def read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a distill run (no {CONFIG}); start one with: edge-agent distill run")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({type(exc).__name__}: {str(exc)[:80]}); restore it from a "
                          "backup, or start a new run with: edge-agent distill run (the journal and cache are "
                          "left as they are)") from None
    if not isinstance(config, dict) or not isinstance(config.get("settings"), dict):
        raise ConfigError(f"{path} is not a distill run config (an object with 'settings'); restore it from a "
                          "backup, or start a new run with: edge-agent distill run")
    return config


def _embedder(spec: str) -> tuple[Embedder, Path | None]:
    if spec == "hash" or spec.startswith("hash:"):
        dim = int(spec.split(":", 1)[1]) if ":" in spec else 64
        return HashEmbedder(dim=dim), None
    directory = Path(spec).expanduser()
    if not (directory / "model.onnx").is_file():
        raise ModelError(f"no exported embedder at {directory}; run: edge-agent models export-embedder, or pass "
                         "--embedder DIR (or --embedder hash for a quick test)")
    return OnnxEmbedder(directory), directory


def _student(spec: str, runtime: RuntimeConfig | None) -> tuple[ChatBackend, str]:
    if spec == "echo":
        return EchoStudent(), "echo"
    from edge_agent.models import resolve_model

    model = resolve_model(spec or None)
    return make_backend(LLAMA_CPP, spec=model, runtime=runtime), f"{model.name}@{model.sha256[:12]}"


def open_build(run_dir: Path, *, backends: Mapping[str, ChatBackend] | None = None,
               student: ChatBackend | None = None, embedder: Embedder | None = None,
               loop: Mapping[str, Any] | None = None, budget: Mapping[str, Any] | None = None,
               teacher: Mapping[str, Any] | None = None, on_event: EventFn | None = None,
               runtime: RuntimeConfig | None = None) -> Build:
    """Open a run directory for (re)starting; `loop`/`budget`/`teacher` override its stored settings;
    `runtime` (threads, wait policy) is passed to a llama.cpp student.

    Only settings that do not change what is asked (timeouts, retries, concurrency, budgets) are
    overridden here; a new teacher endpoint is saved first with `update_endpoint`.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    domain = load_domain(run_dir / DOMAIN)
    settings = parse_settings(config["settings"], f"{run_dir / CONFIG}").with_overrides(
        loop=loop, budget=budget, teacher=teacher)
    endpoints = {role: settings.endpoint(role) for role in ROLES}
    if backends is None:
        backends = OpenAIChat.for_roles(endpoints)
    cache = CallCache(Path(config["cache"]))
    run_id = str(config["run_id"])
    meter = Meter(budget=settings.budget, prices=settings.prices)
    meter.restore(cache.spent(run_id))
    if student is None:
        student, student_model = _student(str(config.get("student", "")), runtime)
    else:
        student_model = student.name
    emb_dir: Path | None = None
    if embedder is None:
        embedder, emb_dir = _embedder(str(config["embedder"]))
    pack_settings = domain.pack_settings
    build = Build(run_dir=run_dir, run_id=run_id, domain=domain, settings=settings, caller=None,  # type: ignore[arg-type]
                  student=StudentRunner(student, domain.system_prompt(), embedder, settings=pack_settings,
                                        cache=cache, run_id=run_id, max_tokens=settings.loop.student_max_tokens,
                                        student_id=f"student:{student_model}"),
                  student_model=student_model, embedder=embedder, embedder_dir=emb_dir,
                  journal=Journal(run_dir / JOURNAL), cache=cache, pack_settings=pack_settings,
                  on_event=on_event, backends=backends)
    build.caller = Caller(endpoints, backends, cache=cache, meter=meter, run_id=run_id,
                          concurrency=settings.loop.concurrency, json_retries=settings.loop.json_retries,
                          on_call=lambda role, cached: build.emit("call", role=role, cached=cached))
    return build
