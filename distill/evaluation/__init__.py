"""Evaluation: base student vs guideline vs pack vs teacher vs transfer, with CIs and an HTML report.

Conversations are simulated live (any OpenAI-compatible simulator) or replayed from a recording,
judged (LLM judges with validated JSON, an offline embedding metric, policy checks) and summarised.
"""

from .cases import CaseSelection, case_split, select_cases
from .conditions import GLOBAL_GUIDELINE, KINDS, Condition, build_responders, parse_condition
from .judges import ConversationJudge, TurnJudge, score_offline
from .records import Case, Conversation, Recording, Turn, read_recording, write_recording
from .report import read_results, render_html, text_table, write_report
from .runner import EvalParts, EvalResult, EvalSettings, run_online, run_replay
from .simulation import replay, simulate
from .statistics import pass_hat_k, summarise

__all__ = [
    "GLOBAL_GUIDELINE",
    "KINDS",
    "Case",
    "CaseSelection",
    "Condition",
    "Conversation",
    "ConversationJudge",
    "EvalParts",
    "EvalResult",
    "EvalSettings",
    "Recording",
    "Turn",
    "TurnJudge",
    "build_responders",
    "case_split",
    "parse_condition",
    "pass_hat_k",
    "read_recording",
    "read_results",
    "render_html",
    "replay",
    "run_online",
    "run_replay",
    "score_offline",
    "select_cases",
    "simulate",
    "summarise",
    "text_table",
    "write_recording",
    "write_report",
]
