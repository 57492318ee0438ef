"""Domain files (TOML): who the agent is, the written policy, customer intents and persona grid.

Both sides read it: the device needs the system prompt and policy rules; `distill` also uses the
intents and persona dimensions. Unknown keys are errors so typos don't silently do nothing.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import ConfigError
from .facts import FactSpec, load_fact_source, parse_fact_specs
from .keys import check_keys
from .policy import PolicyRule

if TYPE_CHECKING:
    from .pack.manifest import PackSettings

__all__ = ["Domain", "PolicyRule", "Intent", "load_domain", "parse_domain", "persona_grid"]

_TOP = {"domain", "policy", "intents", "personas", "rules", "retrieval", "prompting", "generation",
        "roles", "distill", "budget", "prices", "facts", "fact_source", "replies"}
# Safe replies the turn planner may give instead of an unchecked one (see edge_agent/planner.py).
_REPLIES = {"clarify", "handoff", "repeat_ask", "off_topic"}
# Tables only `distill` reads (endpoints, loop knobs, budgets, prices); validated there.
_BUILD_TABLES = ("roles", "distill", "budget", "prices")
_DOMAIN = {"name", "company", "agent_role", "goal", "language", "greeting"}
_POLICY = {"text", "digest", "digest_file"}  # digest: the student's short policy (see digest.py)
_INTENT = {"id", "description", "customer_goal", "opening"}
_RULE = {"id", "kind", "pattern", "description", "severity", "examples", "compliant"}
RULE_KINDS = ("forbidden_promise", "forbidden_phrase", "required_step")


@dataclass(frozen=True)
class Intent:
    id: str
    description: str
    customer_goal: str = ""
    opening: str = ""


@dataclass(frozen=True)
class Domain:
    name: str
    company: str
    agent_role: str
    policy: str
    goal: str = ""
    language: str = "en"
    greeting: str = ""
    intents: tuple[Intent, ...] = ()
    personas: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    rules: tuple[PolicyRule, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""
    facts: tuple[FactSpec, ...] = ()
    fact_source: Mapping[str, Any] = field(default_factory=dict)
    replies: Mapping[str, str] = field(default_factory=dict)
    base_dir: Path | None = None  # the domain file's folder: fact-source data paths are relative to it
    digest: str = ""  # the device's short policy; `policy` stays what the teacher, judge and lint use
    digest_info: Mapping[str, Any] = field(default_factory=dict)

    def data_files(self) -> dict[str, Path]:
        """Files a pack must carry for this domain (the fact source's data), by their name in the pack."""
        data = self.fact_source.get("data")
        if not data:
            return {}
        path = Path(str(data))
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        if not path.is_file():
            raise ConfigError(f"{self.source} [fact_source]: data file {data} not found next to the domain file")
        return {f"facts/{path.name}": path}

    @property
    def pack_settings(self) -> PackSettings:
        """The retrieval, prompting and generation settings a pack built from this domain carries."""
        return _pack_settings(self.settings, self.source)

    def system_prompt(self, full: bool = False) -> str:
        """The agent's system prompt: role, goal and policy. Stable text, first in every prompt.

        The device's prompt carries the policy digest when there is one; `full=True` (the teacher
        answering as the agent) carries the full policy.
        """
        parts = [f"You are {self.agent_role} at {self.company}."]
        if self.goal:
            parts.append(self.goal.strip())
        parts.append("Policy:\n" + (self.policy if full or not self.digest else self.digest).strip())
        parts.append("Reply to the customer in a few friendly sentences. Follow the policy; never promise "
                     "what it does not allow. Notes marked as agent guidance are private advice for you, "
                     "not words from the customer.")
        return "\n\n".join(parts)

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "company": self.company, "system_prompt": self.system_prompt(),
            "rules": [{**r.__dict__, "examples": list(r.examples), "compliant": list(r.compliant)} for r in self.rules]}
        if self.greeting:
            out["greeting"] = self.greeting
        if self.facts:
            out["facts"] = [f.to_json() for f in self.facts]
        if self.fact_source:
            source = dict(self.fact_source)
            if source.get("data"):
                source["data"] = next(iter(self.data_files()))  # relative to the pack
            out["fact_source"] = source
        if self.replies:
            out["replies"] = dict(self.replies)
        if self.digest:  # both policies: the full one for audits, the digest the student was given
            out["policy"] = self.policy.strip()
            out["digest"] = {"text": self.digest, **dict(self.digest_info)}
        return out


def _pack_settings(settings: Mapping[str, Any], source: str) -> PackSettings:
    from .pack.manifest import SETTINGS_TABLES, PackSettings

    return PackSettings.from_tables({k: v for k, v in settings.items() if k in SETTINGS_TABLES},
                                    lambda name: f"{source} [{name}]", source)


def _need_str(where: str, data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    return value


def _opt_str(where: str, data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string")
    return value


def _digest_fields(source: str, pol: Mapping[str, Any]) -> dict[str, Any]:
    """`[policy] digest` (inline, trusted as written) or `digest_file` (read by `load_domain`)."""
    if "digest" in pol and "digest_file" in pol:
        raise ConfigError(f"{source} [policy]: give digest or digest_file, not both")
    if "digest_file" in pol:
        return {"digest_info": {"file": _need_str(f"{source} [policy]", pol, "digest_file")}}
    if "digest" in pol:
        text = _need_str(f"{source} [policy]", pol, "digest").strip()
        return {"digest": text, "digest_info": {"source": "inline", "status": "approved", "chars": len(text)}}
    return {}


def parse_domain(data: Mapping[str, Any], source: str = "<domain>") -> Domain:
    check_keys(data, _TOP, source)
    dom = data.get("domain")
    if not isinstance(dom, dict):
        raise ConfigError(f"{source}: missing [domain] table with name, company and agent_role")
    check_keys(dom, _DOMAIN, f"{source} [domain]")
    pol = data.get("policy")
    if not isinstance(pol, dict):
        raise ConfigError(f"{source}: missing [policy] table with the policy text")
    check_keys(pol, _POLICY, f"{source} [policy]")
    for key in ("intents", "rules"):
        items = data.get(key, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ConfigError(f"{source}: '{key}' must be an array of tables ([[{key}]] entries)")
    for key in ("personas", *(k for k in ("retrieval", "prompting", "generation", *_BUILD_TABLES) if k in data)):
        if key in data and not isinstance(data[key], dict):
            raise ConfigError(f"{source}: '{key}' must be a table ([{key}])")
    intents = []
    for i, item in enumerate(data.get("intents", [])):
        where = f"{source} [[intents]] #{i + 1}"
        check_keys(item, _INTENT, where)
        intents.append(Intent(id=_need_str(where, item, "id"), description=_need_str(where, item, "description"),
                              customer_goal=_opt_str(where, item, "customer_goal"),
                              opening=_opt_str(where, item, "opening")))
    rules = []
    for i, item in enumerate(data.get("rules", [])):
        where = f"{source} [[rules]] #{i + 1}"
        check_keys(item, _RULE, where)
        kind = _need_str(where, item, "kind")
        if kind not in RULE_KINDS:
            raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(RULE_KINDS)}")
        pattern = _need_str(where, item, "pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}: pattern is not a valid regular expression ({exc})") from None
        lists = {}
        for key in ("examples", "compliant"):
            value = item.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError(f"{where}: '{key}' must be a list of non-empty sentences")
            lists[key] = tuple(value)
        if lists["examples"] and kind == "required_step":
            raise ConfigError(f"{where}: 'examples' are violating sentences, only for forbidden_* rules")
        rules.append(PolicyRule(id=_need_str(where, item, "id"), kind=kind, pattern=pattern,
                                description=_opt_str(where, item, "description"),
                                severity=_opt_str(where, item, "severity", "error"),
                                **lists))
    personas = data.get("personas", {})
    if not isinstance(personas, dict) or any(not isinstance(v, list) or not v for v in personas.values()):
        raise ConfigError(f"{source} [personas]: each persona dimension must be a non-empty list")
    settings = {k: dict(data[k]) for k in ("retrieval", "prompting", "generation", *_BUILD_TABLES) if k in data}
    _pack_settings(settings, source)  # a bad setting fails when the domain loads, not at chat time
    facts = parse_fact_specs(data.get("facts", []), source)
    fact_source = data.get("fact_source", {})
    if not isinstance(fact_source, dict):
        raise ConfigError(f"{source}: 'fact_source' must be a table ([fact_source])")
    if fact_source:
        load_fact_source({k: v for k, v in fact_source.items() if k != "data"})  # names the problem now, not at chat time
    replies = data.get("replies", {})
    if not isinstance(replies, dict):
        raise ConfigError(f"{source}: 'replies' must be a table ([replies])")
    check_keys(replies, _REPLIES, f"{source} [replies]")
    for key, value in replies.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source} [replies]: '{key}' must be a non-empty reply text")
    return Domain(
        name=_need_str(f"{source} [domain]", dom, "name"),
        company=_need_str(f"{source} [domain]", dom, "company"),
        agent_role=_need_str(f"{source} [domain]", dom, "agent_role"),
        policy=_need_str(f"{source} [policy]", pol, "text"), **_digest_fields(source, pol),
        goal=_opt_str(f"{source} [domain]", dom, "goal"), language=_opt_str(f"{source} [domain]", dom, "language", "en"),
        greeting=_opt_str(f"{source} [domain]", dom, "greeting"),
        intents=tuple(intents), personas={k: tuple(v) for k, v in personas.items()}, rules=tuple(rules),
        settings=settings, source=source, facts=facts, fact_source=dict(fact_source), replies=dict(replies),
    )


def load_domain(path: Path | str) -> Domain:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"domain file {path} not found; pass a domain .toml (see the examples in distill/domains)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: invalid TOML ({exc}); fix the file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not UTF-8 text; a domain file is TOML (see distill/domains)") from None
    from .digest import attach_digest

    return attach_digest(replace(parse_domain(data, path.name), base_dir=path.resolve().parent))


def persona_grid(domain: Domain) -> list[dict[str, Any]]:
    """Every combination of the persona dimensions, in a stable order."""
    keys = sorted(domain.personas)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(domain.personas[k] for k in keys))]
