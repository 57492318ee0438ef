"""Prompt builders for every teacher-side role: pure functions from plain data to chat messages.

Each system prompt opens with a fixed role line (the `ROLE_LINES` values), which fakes use to
tell the roles apart. The agent-side prompt is not here: teacher and student both answer with the
domain's own system prompt, exactly as the device does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.conversation import render_transcript
from edge_agent.domain import Domain

from ..roles.schemas import COMPACT_MAX_WORDS, StrategyItem

__all__ = [
    "ROLE_LINES",
    "customer_messages",
    "generator_messages",
    "judge_messages",
    "merger_messages",
    "persona_text",
    "render_items",
    "writer_messages",
]

ROLE_LINES = {
    "customer": "You are role-playing a customer in a support chat.",
    "writer": "You are a strategy writer who coaches a customer-support agent.",
    "merger": "You are an editor who merges two lists of coaching notes for a support agent.",
    "judge": "You are a strict judge comparing two replies of a support agent.",
    "generator": "You are a scenario designer for training a support agent.",
}


def persona_text(persona: Mapping[str, Any]) -> str:
    parts = []
    for key, value in sorted(persona.items()):
        label = key.replace("_", " ")
        if isinstance(value, bool):
            parts.append(f"- {label}: {'yes' if value else 'no'}")
        else:
            parts.append(f"- {label}: {value}")
    return "\n".join(parts)


def customer_messages(domain: Domain, customer: Mapping[str, Any], history: Sequence[Mapping[str, str]],
                      end_marker: str) -> list[dict[str, str]]:
    """The simulator's view: the agent speaks as "user", the customer (the model) as "assistant"."""
    situation = customer.get("situation", {})
    system = "\n\n".join(p for p in [
        ROLE_LINES["customer"],
        f"You are contacting {domain.company}. Your situation: {situation.get('description', '')}",
        f"What you want: {situation.get('customer_goal', '') or 'a good resolution'}",
        "Your personality:\n" + persona_text(customer.get("persona", {})),
        f"Something you might open with (use your own words): {situation.get('opening', '')}"
        if situation.get("opening") else "",
        "Write only the customer's next message, one to three sentences, in character. Stay consistent "
        "with what you said before. Your mood may change with how the agent treats you. When your issue "
        f"is settled or you want to leave, say goodbye and end that message with {end_marker}",
    ] if p)
    out = [{"role": "system", "content": system}]
    opener = domain.greeting or "Hello, how can I help you today?"
    out.append({"role": "user", "content": opener})
    for m in history:
        role = "assistant" if m["role"] == "user" else "user"
        out.append({"role": role, "content": m["content"]})
    return out


def render_items(items: Sequence[StrategyItem]) -> str:
    """The full strategy text: numbered items, each with what to do and what to avoid."""
    lines = []
    for i, item in enumerate(items, 1):
        lines.append(f"{i}. Do: {item.do}")
        if item.avoid:
            lines.append(f"   Avoid: {item.avoid}")
    return "\n".join(lines)


def _json_items(items: Sequence[StrategyItem]) -> str:
    return json.dumps([item.model_dump() for item in items], ensure_ascii=False, indent=1)


_OUTPUT = (
    'Answer with one JSON object only: {{"items": [{{"do": "...", "avoid": "..."}}], "compact": "...", '
    '"requires": ["..."]}}. '
    "At most {n} items, each specific to this moment of the conversation. \"compact\" is 1-3 short "
    f"imperative sentences, at most {COMPACT_MAX_WORDS} words, plain text without markdown, that tell the "
    "agent what to do next."
)


def writer_messages(domain: Domain, history: Sequence[Mapping[str, str]], good: str, bad: str,
                    max_items: int) -> list[dict[str, str]]:
    system = (f"{ROLE_LINES['writer']} The agent works at {domain.company} under this policy:\n"
              f"{domain.policy.strip()}")
    facts = "\n".join(f"- {f.id}: {f.description}" for f in domain.facts)
    requires = (f"\"requires\" lists the facts below that the GOOD reply takes as already established in this "
                f"conversation (write !id for one it takes as false); leave it empty if none:\n{facts}\n"
                if facts else "Leave \"requires\" empty. ")
    user = (f"Conversation so far:\n{render_transcript(history)}\n\n"
            f"A GOOD next reply (write down what makes it good, quoting its wording where useful):\n{good}\n\n"
            f"The agent's reply, which should become more like the good one:\n{bad}\n\n"
            "List what the agent should do and what it should avoid in its next reply, within the policy. "
            + _OUTPUT.format(n=max_items) + " " + requires)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def merger_messages(previous: Sequence[StrategyItem], new: Sequence[StrategyItem], max_items: int,
                    history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    system = ROLE_LINES["merger"]
    user = (f"Conversation so far:\n{render_transcript(history)}\n\n"
            f"Earlier notes:\n{_json_items(previous)}\n\nNew notes:\n{_json_items(new)}\n\n"
            "Merge them into one list: keep what the new notes add, drop repeats and anything they "
            "contradict, keep the most useful. " + _OUTPUT.format(n=max_items))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def judge_messages(history: Sequence[Mapping[str, str]], reference: str, candidate: str) -> list[dict[str, str]]:
    system = (f"{ROLE_LINES['judge']} Score from 1 to 5 how close the candidate reply comes to the "
              "reference reply in how it would satisfy the customer: 5 = as good as the reference, "
              "1 = far worse or breaks the company's policy.")
    user = (f"Conversation so far:\n{render_transcript(history)}\n\nReference reply:\n{reference}\n\n"
            f"Candidate reply:\n{candidate}\n\n"
            'Answer with one JSON object only: {"score": <1-5>, "reason": "<one sentence>"}.')
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def generator_messages(domain: Domain, weak: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, str]]:
    """Ask for `n` new customer situations aimed at the scenarios where the student did worst."""
    system = (f"{ROLE_LINES['generator']} The agent works at {domain.company} under this policy:\n"
              f"{domain.policy.strip()}")
    intents = "\n".join(f"- {i.id}: {i.description}" for i in domain.intents) or "- (none listed)"
    cases = "\n\n".join(
        f"Case {k + 1} (best score {w.get('score', '?')}/5; judge said: {w.get('reason', '')}):\n{w['transcript']}"
        for k, w in enumerate(weak))
    user = (f"Known customer problems:\n{intents}\n\nConversations where the agent did worst:\n{cases}\n\n"
            f"Propose {n} new, realistic customer situations that would test the same weaknesses, each "
            "one the policy can handle (no requests for things the company does not offer). "
            'Answer with one JSON object only: {"situations": [{"title": "...", "description": "...", '
            '"customer_goal": "...", "opening": "<the customer\'s first message>", "why": "<which weakness '
            'it targets>"}]}.')
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
