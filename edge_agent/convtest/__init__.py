"""Conversation tests: scripted multi-turn conversations run against a pack, every reply checked."""

from .checks import CheckResult, Context, check_reply
from .runner import ConversationResult, SuiteResult, TurnResult, run_conversation, run_suite
from .suite import ASSERTIONS, Conversation, Expect, Suite, SuiteError, Turn, load_suite, parse_suite, select

__all__ = [
    "ASSERTIONS",
    "CheckResult",
    "Context",
    "Conversation",
    "ConversationResult",
    "Expect",
    "Suite",
    "SuiteError",
    "SuiteResult",
    "Turn",
    "TurnResult",
    "check_reply",
    "load_suite",
    "parse_suite",
    "run_conversation",
    "run_suite",
    "select",
]
