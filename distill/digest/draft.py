"""Draft a policy digest with the teacher: the short policy a small student can use on the device.

The teacher reads the full `[policy] text` and writes at most `max_rules` numbered rules within
`max_chars`. The draft is checked (not empty or placeholder, within the length, no forbidden
`[[rules]]` pattern, every number and amount in it also in the policy) and written as a pending
one-entry library file for `edge-agent library review`; the domain then names it in
`[policy] digest_file`. Nothing here decides whether the digest is good enough: a person does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from edge_agent.digest import digest_record
from edge_agent.domain import Domain
from edge_agent.errors import ConfigError
from edge_agent.library import Strategy

from ..lifecycle.lint import lint_strategy
from ..lifecycle.quality import text_problems

__all__ = ["check_digest", "digest_messages", "draft_digest"]

_NUMBER = re.compile(r"[£$€]?\d+(?:[.,]\d+)?%?")
# Pieces of the request itself: a weak teacher sometimes answers by repeating the instructions.
_ECHO = re.compile(r"\banswer with the rules only\b|\brewrite it as\b|\bat most \d+ (?:characters|rules)\b|"
                   r"\bone rule per line\b|\bno headings and no markdown\b", re.IGNORECASE)


def _limits(text: str) -> set[str]:
    """The numbers of a text that are limits or amounts, not list numbering (1-12 without a unit)."""
    return {n for n in _NUMBER.findall(text) if not re.fullmatch(r"\d{1,2}", n) or int(n) > 12}


def digest_messages(domain: Domain, max_rules: int, max_chars: int) -> list[dict[str, str]]:
    system = ("You condense a company's customer-support policy for a very small on-device model that "
              "reads it before every reply.")
    user = (f"The full policy of {domain.company}:\n{domain.policy.strip()}\n\n"
            f"Rewrite it as at most {max_rules} numbered rules, at most {max_chars} characters in all. Keep every "
            "limit, amount, time window and condition exactly as written, keep what the agent must check before "
            "acting, and drop explanations, examples and anything the agent never has to say or decide. Plain "
            "text, one rule per line, imperative sentences, no headings and no markdown. Answer with the rules only.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _clean(text: str) -> str:
    lines = [line.strip().strip("*").strip() for line in text.strip().strip("`").splitlines()]
    return "\n".join(line for line in lines if line)


def check_digest(domain: Domain, text: str, max_chars: int) -> tuple[list[str], list[str]]:
    """(problems that make the draft unusable, warnings a reviewer should look at)."""
    problems = text_problems("digest", text)
    warnings: list[str] = []
    if problems:
        return problems, warnings
    if len(text) > max_chars * 1.25:
        problems.append(f"the digest is {len(text)} characters, well over the {max_chars} asked for")
    elif len(text) > max_chars:
        warnings.append(f"the digest is {len(text)} characters, over the {max_chars} asked for")
    if len(text) >= len(domain.policy.strip()):
        problems.append("the digest is not shorter than the policy")
    if _ECHO.search(text):
        problems.append("the digest repeats the request instead of the policy")
    limits = _limits(domain.policy)
    kept = limits & _limits(text)
    if len(limits) >= 4 and len(kept) < len(limits) / 2:
        problems.append(f"the digest keeps {len(kept)} of the policy's {len(limits)} limits and amounts "
                        f"(missing e.g. {', '.join(sorted(limits - kept)[:4])})")
    probe = Strategy(id="policy-digest", scenario="-", strategy=text)
    for flag in lint_strategy(probe, domain.rules, fields=("strategy",)):
        if flag.kind != "missing_step":
            warnings.append(f"matches rule {flag.rule} ({flag.excerpt[:60]}); check it is a prohibition")
    invented = sorted(_limits(text) - _limits(domain.policy))
    if invented:
        warnings.append(f"numbers not in the policy: {', '.join(invented)}; check them against the policy")
    return problems, warnings


async def draft_digest(domain: Domain, backend: Any, endpoint: Any, *, max_rules: int = 10,
                       max_chars: int = 1400) -> tuple[Strategy, list[str]]:
    """One teacher call; returns the pending digest entry and the reviewer's warnings."""
    from ..roles.caller import in_thread
    from ..roles.openai_chat import ChatRequest, ask

    request = ChatRequest(messages=digest_messages(domain, max_rules, max_chars), temperature=0.0,
                          max_tokens=max(256, max_chars // 2))
    result = await in_thread(lambda: ask(backend, request))
    text = _clean(result.text)
    problems, warnings = check_digest(domain, text, max_chars)
    if problems:
        raise ConfigError(f"the teacher's digest is unusable ({'; '.join(problems)}); try a stronger teacher "
                          "or write [policy] digest by hand")
    provenance: Mapping[str, Any] = {
        "teacher_model": endpoint.model, "base_url": endpoint.base_url, "domain": domain.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "warnings": warnings,
        "policy_chars": len(domain.policy.strip())}
    return digest_record(domain.policy, text, provenance), warnings
