"""Policy lint for strategies: the domain's `[[rules]]`, their examples and prompt-injection shapes.

Only the text that reaches the student's prompt is checked (strategy, compact, exemplar). Forbidden
rules (by pattern, and by meaning through a `RuleChecker` when an embedder is given), instruction
shapes and injection shapes raise flags that block pack builds unless explicitly allowed; a
`required_step` rule cannot know which scenarios need its step, so its misses are advisory notices.
Device-side: `pack build` gates on it without the distill extra.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .library import Strategy
from .pack.manifest import rules_from_manifest  # re-exported: the builder's lint reads a pack's rules
from .policy import PolicyRule
from .rulecheck import RuleChecker

__all__ = [
    "INJECTION_CHECKS",
    "LINT_FIELDS",
    "Flag",
    "InjectionCheck",
    "blocking",
    "fact_flags",
    "gate",
    "lint_strategies",
    "lint_strategy",
    "rules_from_manifest",
]

LINT_FIELDS = ("strategy", "compact", "exemplar")
# Guidance fields advise the agent, so a forbidden phrase inside a prohibition ("Avoid: telling them
# to calm down") is the policy being followed; the exemplar is a reply and gets no such allowance.
GUIDANCE_FIELDS = ("strategy", "compact")
_PROHIBITION = re.compile(r"\b(?:avoid|never|don'?t|do not|must not|mustn'?t|should not|shouldn'?t|"
                          r"no need to|refuse to|instead of)\b", re.IGNORECASE)
SEVERITIES = ("error", "warning", "notice")


@dataclass(frozen=True)
class Flag:
    """One finding: which strategy and field, which rule, how severe, and the offending text."""

    strategy_id: str
    field: str
    rule: str
    kind: str  # forbidden_promise | forbidden_phrase | missing_step | injection | instruction | llm
    severity: str  # error | warning | notice
    excerpt: str
    message: str

    @property
    def blocks(self) -> bool:
        return self.severity != "notice"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class InjectionCheck:
    id: str
    pattern: re.Pattern[str]
    message: str
    severity: str = "error"


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE)


# Shapes that try to act on the model rather than advise the agent. Strategy text is private advice
# rendered inside the user turn, so any of these there is either a mistake or an attack.
INJECTION_CHECKS: tuple[InjectionCheck, ...] = (
    InjectionCheck("ignore-instructions", _rx(
        r"\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|system|"
        r"all|your|any|the|these|those)\b[^.\n]{0,25}?\b(?:instructions?|prompts?|rules?|messages?|guidelines?|"
        r"polic(?:y|ies)|directives?)\b"),
        "tells the model to ignore its instructions"),
    InjectionCheck("role-marker", _rx(
        r"^\s*(?:system|assistant|user|developer|tool)\s*:|<\|(?:im_start|im_end|system|user|assistant|"
        r"eot_id|start_header_id|end_header_id|begin_of_text|endoftext)\|>|\[/?INST\]|<</?SYS>>"),
        "contains a chat role marker"),
    InjectionCheck("guidance-marker", _rx(r"\[\[\s*(?:END\s+)?AGENT\s+GUIDANCE"),
                   "forges the agent-guidance delimiters"),
    InjectionCheck("url", _rx(r"\b(?:https?|ftp|file)://[^\s)>\]]+|\bwww\.[a-z0-9-]+(?:\.[a-z0-9-]+)+\S*"),
                   "contains a URL"),
    InjectionCheck("tool-call", _rx(
        r"</?(?:tool_call|tool_code|function_call|tools?)>|<\|python_tag\|>|\"name\"\s*:\s*\"[^\"]*\"\s*,\s*"
        r"\"(?:arguments|parameters|args)\"\s*:|\"(?:tool_calls|function_call)\"\s*:"),
        "looks like a tool or function call"),
    # Guidance that orders the agent to commit to something, or to put the policy aside: a strategy
    # advises how to handle a case, it never licenses a promise ("Always promise a full refund").
    InjectionCheck("instruction-promise", _rx(
        r"\b(?:promise|guarantee|assure|pledge|commit to|tell (?:them|the customer) (?:that )?(?:they(?:'ll| will)|"
        r"we(?:'ll| will)))\b[^.!?\n]{0,60}?\b(?:refunds?|refunded|money back|every penny|reimburse\w*|compensat\w*|"
        r"credits?|free|waive\w*|discounts?|no (?:charge|fee|cost)s?|at no cost|price[- ]match\w*|anything|"
        r"everything|whatever)\b|\balways (?:promise|guarantee|agree to|say yes|offer)\b"),
        "orders the agent to promise money, waivers or anything asked; guidance advises, it does not license "
        "promises"),
    InjectionCheck("instruction-policy", _rx(
        r"\b(?:ignore|skip|bypass|override|set aside|forget about|break|bend|work around)\s+(?:the |our |any |"
        r"company |this )?(?:polic(?:y|ies)|rules?|terms)\b|\bregardless of (?:the |our |what the )?(?:polic(?:y|ies)|"
        r"rules?|terms)\b|\bmake an exception to (?:the |our )?(?:polic(?:y|ies)|rules?)\b|\bgive (?:them|the "
        r"customer) (?:whatever|anything|everything) (?:they|he|she) (?:want|ask|demand)s?\b|\bwhatever it takes\b"),
        "tells the agent to put the policy aside"),
    InjectionCheck("persona-override", _rx(
        r"\b(?:you are now|from now on,? you (?:are|will|must)|new instructions\b|developer mode|jailbreak|"
        r"act as (?:an? |the )?(?:system|admin|administrator|developer|root))"),
        "tries to change who the model is", severity="warning"),
)


def _excerpt(text: str, match: re.Match[str], pad: int = 30) -> str:
    start, end = max(0, match.start() - pad), min(len(text), match.end() + pad)
    snippet = " ".join(text[start:end].split())
    return ("..." if start else "") + snippet + ("..." if end < len(text) else "")


def _search(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, flags=re.IGNORECASE)


def _prohibited(text: str, match: re.Match[str]) -> bool:
    """True when the match sits in a sentence or line that forbids it ("Avoid: ...", "never ...")."""
    start = max(text.rfind(c, 0, match.start()) for c in ".!?\n;") + 1
    return _PROHIBITION.search(text, start, match.start() + 1) is not None


def _prohibition_sentence(sentence: str) -> bool:
    return _PROHIBITION.search(sentence) is not None


def _semantic_flags(strategy: Strategy, texts: Mapping[str, str], checker: RuleChecker,
                    already: set[tuple[str, str]]) -> list[Flag]:
    """Flags for sentences close in meaning to a rule's violating examples (the regex missed them)."""
    by_id = {r.id: r for r in checker.rules}
    out: list[Flag] = []
    for name, text in texts.items():
        skip = _prohibition_sentence if name in GUIDANCE_FIELDS else None
        for m in checker.matches(text, skip=skip):
            if m.how != "example" or (name, m.rule) in already:
                continue
            rule = by_id[m.rule]
            severity = rule.severity if rule.severity in SEVERITIES else "error"
            out.append(Flag(strategy.id, name, rule.id, rule.kind, severity, m.sentence[:160],
                            f"says what rule {rule.id} forbids (cosine {m.score:.2f} to its example "
                            f"\"{m.example[:60]}\")"))
            already.add((name, m.rule))
    return out


def lint_strategy(strategy: Strategy, rules: Sequence[PolicyRule],
                  checks: Sequence[InjectionCheck] = INJECTION_CHECKS,
                  fields: Sequence[str] = LINT_FIELDS, checker: RuleChecker | None = None) -> list[Flag]:
    """Every flag for one strategy, in field then rule order; `checker` adds the by-meaning check."""
    flags: list[Flag] = []
    texts = {name: str(getattr(strategy, name)) for name in fields if str(getattr(strategy, name)).strip()}
    for name, text in texts.items():
        for rule in rules:
            if rule.kind == "required_step":
                continue
            match = _search(rule.pattern, text)
            if match and not (name in GUIDANCE_FIELDS and _prohibited(text, match)):
                severity = rule.severity if rule.severity in SEVERITIES else "error"
                flags.append(Flag(strategy.id, name, rule.id, rule.kind, severity, _excerpt(text, match),
                                  rule.description or f"matches forbidden pattern of rule {rule.id}"))
        for check in checks:
            match = check.pattern.search(text)
            if match and check.id.startswith("instruction") and name in GUIDANCE_FIELDS and _prohibited(text, match):
                continue  # "Do not promise a free visit" is the policy being followed
            if match:
                flags.append(Flag(strategy.id, name, check.id, "injection", check.severity,
                                  _excerpt(text, match), check.message))
    if checker is not None and checker.semantic:
        flags += _semantic_flags(strategy, texts, checker, {(f.field, f.rule) for f in flags})
    joined = "\n".join(texts.values())
    for rule in rules:
        if rule.kind == "required_step" and not _search(rule.pattern, joined):
            flags.append(Flag(strategy.id, "*", rule.id, "missing_step", "notice", "",
                              rule.description or f"does not mention the required step {rule.id}"))
    return flags


def lint_strategies(strategies: Iterable[Strategy], rules: Sequence[PolicyRule],
                    checks: Sequence[InjectionCheck] = INJECTION_CHECKS,
                    fields: Sequence[str] = LINT_FIELDS, embedder: Any = None,
                    checker: RuleChecker | None = None) -> list[Flag]:
    """Lint every strategy; rejected ones are skipped (they never reach a pack).

    With an `embedder` (or a ready `checker`), sentences close in meaning to a rule's `examples`
    are flagged too.
    """
    if checker is None and embedder is not None:
        checker = RuleChecker(rules, embedder)
    out: list[Flag] = []
    for strategy in strategies:
        if strategy.status != "rejected":
            out += lint_strategy(strategy, rules, checks, fields, checker)
    return out


def blocking(flags: Iterable[Flag]) -> list[Flag]:
    return [f for f in flags if f.blocks]


def gate(flags: Sequence[Flag], *, allow: bool) -> None:
    """Raise ConfigError when flags would block a pack build and `allow` was not given."""
    stop = blocking(flags)
    if stop and not allow:
        first = stop[0]
        raise ConfigError(
            f"lint found {len(stop)} flag(s) in {len({f.strategy_id for f in stop})} strategies (first: "
            f"{first.strategy_id} {first.field} '{first.rule}': {first.excerpt[:60]}); fix or reject them "
            "(edge-agent library lint LIBRARY shows all) or pass --allow-lint-flags")


def fact_flags(strategies: Iterable[Strategy], specs: Sequence[Any]) -> list[Flag]:
    """Library entries whose reply claims a fact its `requires` does not list, or that require a fact
    the domain does not declare (the planner could never use them). `specs`: the domain's FactSpecs."""
    from .facts import claimed_facts, parse_condition
    from .planner import template_fields

    known = {s.id for s in specs}
    out: list[Flag] = []
    for s in strategies:
        if s.status == "rejected":
            continue
        required = set()
        for raw in s.requires:
            try:
                cond = parse_condition(raw)
            except ValueError as exc:
                out.append(Flag(s.id, "requires", "bad-condition", "facts", "error", raw, str(exc)))
                continue
            required.add((cond.fact, cond.value))
            if specs and cond.fact not in known:
                out.append(Flag(s.id, "requires", "unknown-fact", "facts", "error", raw,
                                f"requires {cond.fact!r}, which the domain's [[facts]] do not declare"))
        for field in template_fields(s.exemplar):
            if specs and field not in known:
                out.append(Flag(s.id, "exemplar", "unknown-fact", "facts", "error", "{" + field + "}",
                                f"the reply fills in {{{field}}}, which the domain's [[facts]] do not declare"))
        for cond in claimed_facts(s.exemplar, specs) if s.exemplar else []:
            if (cond.fact, cond.value) not in required:
                out.append(Flag(s.id, "exemplar", "uncovered-claim", "facts", "error", str(cond),
                                f"the exemplar claims {cond} but requires does not list it; add \"{cond}\" to "
                                "requires or reword the reply"))
    return out
