"""Run settings for a distillation build: roles (endpoints), the loop's knobs, budgets and prices.

Read from the domain file's optional `[roles.*]`, `[distill]`, `[budget]` and `[prices.*]` tables,
then overridden by CLI flags. Pydantic models with unknown keys forbidden; API keys are never
stored here, only the *name* of the environment variable that holds one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_agent.errors import ConfigError
from edge_agent.keys import unknown_keys_message

__all__ = [
    "ROLES",
    "BudgetSettings",
    "Endpoint",
    "LoopSettings",
    "Price",
    "RoleSettings",
    "RunSettings",
    "settings_from_domain",
]

ROLES = ("teacher", "writer", "merger", "judge", "customer", "generator")
JsonMode = Literal["off", "object", "schema", "grammar"]

# Per-role decoding defaults; everything else is inherited from [roles.teacher].
_ROLE_TEMPERATURE = {"teacher": 0.7, "writer": 0.2, "merger": 0.0, "judge": 0.0, "customer": 0.3,
                     "generator": 0.8}
_ROLE_MAX_TOKENS = {"teacher": 220, "writer": 500, "merger": 500, "judge": 120, "customer": 160,
                    "generator": 700}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleSettings(_Strict):
    """One `[roles.NAME]` table; unset fields fall back to the teacher's, then to defaults."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    timeout_s: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0, le=10)
    json_mode: JsonMode | None = None
    teacher_id: str | None = None


class Endpoint(_Strict):
    """A fully resolved role: where to send the call and how."""

    role: str
    base_url: str
    model: str
    api_key_env: str = ""
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 60.0
    max_retries: int = 2
    json_mode: JsonMode = "object"
    # An explicit name for what answers at this endpoint (e.g. "qwen2.5-7b-q4 2026-11"); part of the
    # cache key, so a swapped model behind the same URL and alias is never answered from the cache.
    teacher_id: str = ""

    def identity(self, fingerprint: str = "") -> str:
        """Who answers: URL, model and the explicit id (or the server-reported fingerprint)."""
        return f"{self.base_url.rstrip('/')}|{self.model}|{self.teacher_id or fingerprint}"


class LoopSettings(_Strict):
    """The `[distill]` table: the build loop's knobs (defaults follow the paper where it says)."""

    stages: tuple[float, ...] = (1.0, 0.6, 0.3)
    cut_turns: tuple[int, ...] = (1, 2, 3, 4)
    max_customer_turns: int = Field(default=6, ge=1, le=40)
    rounds: int = Field(default=5, ge=1, le=20)
    max_items: int = Field(default=10, ge=1, le=30)
    stop_at_max_score: bool = True
    personas: int | None = Field(default=None, ge=1)
    intents: tuple[str, ...] | None = None
    max_customers: int | None = Field(default=None, ge=1)
    min_score: int = Field(default=2, ge=1, le=5)
    scenarios_per_stage: int | None = Field(default=None, ge=1)
    seed: int = 0
    concurrency: int = Field(default=4, ge=1, le=256)
    json_retries: int = Field(default=2, ge=0, le=10)
    generate_per_stage: int = Field(default=4, ge=0, le=100)
    worst_for_generation: int = Field(default=5, ge=1, le=100)
    dedupe_threshold: float = Field(default=0.92, gt=0, le=1.0)
    end_marker: str = "[END]"
    student_max_tokens: int = Field(default=160, ge=1, le=4096)

    @field_validator("stages")
    @classmethod
    def _probabilities(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0.0 <= p <= 1.0 for p in v):
            raise ValueError("stages must be a non-empty list of teacher probabilities in [0, 1]")
        return v

    @field_validator("cut_turns")
    @classmethod
    def _cuts(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(c < 1 for c in v):
            raise ValueError("cut_turns must be a non-empty list of customer-turn counts >= 1")
        return tuple(sorted(set(v)))


class BudgetSettings(_Strict):
    """The `[budget]` table: stop cleanly once any limit is reached (paid calls only)."""

    max_calls: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_cost: float | None = Field(default=None, ge=0)


class Price(_Strict):
    """US dollars per million tokens for one model (a `[prices."MODEL"]` table)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class RunSettings(_Strict):
    roles: Mapping[str, RoleSettings] = Field(default_factory=dict)
    loop: LoopSettings = LoopSettings()
    budget: BudgetSettings = BudgetSettings()
    prices: Mapping[str, Price] = Field(default_factory=dict)

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, v: Mapping[str, RoleSettings]) -> Mapping[str, RoleSettings]:
        message = unknown_keys_message((k for k in v if k not in ROLES), ROLES, "")
        if message is not None:
            raise ValueError(message)
        return v

    def endpoint(self, role: str) -> Endpoint:
        """Resolve a role: its own table, then the teacher's, then built-in defaults."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        own = self.roles.get(role, RoleSettings())
        base = self.roles.get("teacher", RoleSettings())

        def pick(name: str, default: Any) -> Any:
            value = getattr(own, name)
            if value is None and name not in ("temperature", "max_tokens"):
                value = getattr(base, name)
            return default if value is None else value

        base_url, model = pick("base_url", None), pick("model", None)
        if not base_url or not model:
            raise ConfigError(f"role {role!r} has no endpoint; set --teacher-url and --teacher-model "
                              "(or base_url and model in the domain file's [roles.teacher] table)")
        return Endpoint(role=role, base_url=base_url, model=model, api_key_env=pick("api_key_env", ""),
                        temperature=pick("temperature", _ROLE_TEMPERATURE[role]),
                        max_tokens=pick("max_tokens", _ROLE_MAX_TOKENS[role]),
                        timeout_s=pick("timeout_s", 60.0), max_retries=pick("max_retries", 2),
                        json_mode=pick("json_mode", "object"), teacher_id=pick("teacher_id", ""))

    def with_overrides(self, *, teacher: Mapping[str, Any] | None = None, loop: Mapping[str, Any] | None = None,
                       budget: Mapping[str, Any] | None = None) -> RunSettings:
        """A copy with CLI flags applied (None values mean "not given")."""
        data = self.model_dump()
        for key, extra in (("loop", loop), ("budget", budget)):
            data[key].update({k: v for k, v in (extra or {}).items() if v is not None})
        if teacher:
            data["roles"].setdefault("teacher", {})
            data["roles"]["teacher"].update({k: v for k, v in teacher.items() if v is not None})
        return parse_settings(data, "flags")


_FIELDS: dict[str, type[BaseModel]] = {"loop": LoopSettings, "budget": BudgetSettings, "roles": RoleSettings,
                                     "prices": Price}


def _table(loc: tuple[Any, ...]) -> tuple[str, str, type[BaseModel] | None]:
    """The file's name for a settings location: ("loop", "x") -> ("[distill]", "x", LoopSettings)."""
    parts = [str(p) for p in loc]
    head = parts[0] if parts else ""
    if head in ("roles", "prices") and len(parts) >= 2:
        name = parts[1] if head == "roles" else f'"{parts[1]}"'
        return f"[{head}.{name}]", ".".join(parts[2:]), _FIELDS[head]
    table = {"loop": "distill"}.get(head, head)
    return f"[{table}]", ".".join(parts[1:]), _FIELDS.get(head)


def _error_line(where: str, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    table, key, model = _table(tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        valid = model.model_fields if model is not None else ()
        return ConfigError(unknown_keys_message([key], valid, f"{where} {table}") or f"{where} {table}: {key}")
    return ConfigError(f"{where} {table}: {key or 'value'}: {first['msg']}; fix that value")


def parse_settings(data: Mapping[str, Any], where: str) -> RunSettings:
    try:
        return RunSettings.model_validate(dict(data))
    except ValidationError as exc:
        raise _error_line(where, exc) from None


def settings_from_domain(settings: Mapping[str, Mapping[str, Any]], where: str = "domain") -> RunSettings:
    """Build RunSettings from a Domain's raw `settings` (the roles/distill/budget/prices tables)."""
    data: dict[str, Any] = {}
    if "roles" in settings:
        data["roles"] = dict(settings["roles"])
    if "distill" in settings:
        data["loop"] = dict(settings["distill"])
    if "budget" in settings:
        data["budget"] = dict(settings["budget"])
    if "prices" in settings:
        data["prices"] = dict(settings["prices"])
    return parse_settings(data, where)
