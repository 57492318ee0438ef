"""Policy lint, re-exported: the checks live device-side in `edge_agent.lint` (pack build needs them)."""

from __future__ import annotations

from edge_agent.lint import (
    GUIDANCE_FIELDS,
    INJECTION_CHECKS,
    LINT_FIELDS,
    SEVERITIES,
    Flag,
    InjectionCheck,
    blocking,
    gate,
    lint_strategies,
    lint_strategy,
    rules_from_manifest,
)

__all__ = [
    "GUIDANCE_FIELDS",
    "INJECTION_CHECKS",
    "LINT_FIELDS",
    "SEVERITIES",
    "Flag",
    "InjectionCheck",
    "blocking",
    "gate",
    "lint_strategies",
    "lint_strategy",
    "rules_from_manifest",
]
