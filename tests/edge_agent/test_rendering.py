"""Student-fit rendering modes: exact strings per mode, budgets, no guidance kept, pack-driven use."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.backends import ScriptedChat
from edge_agent.embedder import HashEmbedder
from edge_agent.library import Strategy
from edge_agent.pack import PackSettings, build_pack, load_pack
from edge_agent.prompting import GUIDANCE_CLOSE, GUIDANCE_OPEN
from edge_agent.rendering import (
    EXEMPLAR_NOTE,
    SYSTEM_NOTE,
    PromptConfig,
    clean_exemplar,
    injected_text,
    render_prompt,
    renderer_names,
    trim_to_tokens,
)
from edge_agent.retrieval import Hit, approx_tokens

S = Strategy(
    id="a",
    scenario="CUSTOMER: I want my money back.\n\nAGENT: I see.\n\nCUSTOMER: Now, please!",
    strategy="**Empathy:** show it.",
    compact="Say sorry. Offer credit.",
    exemplar="AGENT: I understand.  We can offer credit.",
)
HIT = Hit(S, 0.9, 0)
HIT2 = Hit(Strategy(id="b", scenario="CUSTOMER: y", strategy="Other.", compact="Be brief."), 0.8, 1)
U = {"role": "user", "content": "Refund me."}
EX = "I understand. We can offer credit."
G_EX = f"{GUIDANCE_OPEN}\n{EXEMPLAR_NOTE}\n{EX}\n{GUIDANCE_CLOSE}"
SYS_NOTES = f"SYS\n\n{SYSTEM_NOTE}\n- Say sorry. Offer credit.\n- Be brief."
DEMO = [{"role": "user", "content": "Now, please!"}, {"role": "assistant", "content": EX}]


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("system", [{"role": "system", "content": SYS_NOTES}, U]),
        (
            "exemplar",
            [{"role": "system", "content": "SYS"}, {"role": "user", "content": f"Refund me.\n\n{G_EX}"}],
        ),
        ("exemplar_system", [{"role": "system", "content": f"SYS\n\n{EXEMPLAR_NOTE}\n{EX}"}, U]),
        ("demo", [{"role": "system", "content": "SYS"}, *DEMO, U]),
        (
            "compact+exemplar",
            [
                {"role": "system", "content": "SYS"},
                {
                    "role": "user",
                    "content": (
                        f"Refund me.\n\n{GUIDANCE_OPEN}\nSay sorry. Offer credit.\nBe brief.\n{EXEMPLAR_NOTE}\n{EX}\n{GUIDANCE_CLOSE}"
                    ),
                },
            ],
        ),
        (
            "system+exemplar",
            [{"role": "system", "content": SYS_NOTES}, {"role": "user", "content": f"Refund me.\n\n{G_EX}"}],
        ),
        ("system+demo", [{"role": "system", "content": SYS_NOTES}, *DEMO, U]),
        (
            "compact+demo",
            [
                {"role": "system", "content": "SYS"},
                *DEMO,
                {
                    "role": "user",
                    "content": (
                        f"Refund me.\n\n{GUIDANCE_OPEN}\nSay sorry. Offer credit.\nBe brief.\n{GUIDANCE_CLOSE}"
                    ),
                },
            ],
        ),
    ],
)
def test_modes_exact(mode: str, expected: list[dict[str, str]]) -> None:
    assert render_prompt("SYS", [U], [HIT, HIT2], PromptConfig(mode=mode)) == expected


@pytest.mark.parametrize("mode", [m for m in renderer_names() if m != "adapt"])
def test_no_hits_means_plain(mode: str) -> None:
    assert render_prompt("SYS", [U], [], PromptConfig(mode=mode)) == [{"role": "system", "content": "SYS"}, U]


@pytest.mark.parametrize("mode", renderer_names())
def test_guidance_never_written_back(mode: str) -> None:
    history = [U, {"role": "assistant", "content": "Sorry!"}, {"role": "user", "content": "Still waiting."}]
    before = copy.deepcopy(history)
    out = render_prompt("SYS", history, [HIT], PromptConfig(mode=mode))
    assert history == before
    # earlier turns are passed through unchanged: the next turn's prompt carries only its own guidance
    assert out[1] == {"role": "user", "content": "Refund me."}
    assert out[2] == {"role": "assistant", "content": "Sorry!"}


def test_demo_keeps_earlier_prefix() -> None:
    history = [U, {"role": "assistant", "content": "Sorry!"}, {"role": "user", "content": "Still waiting."}]
    plain = render_prompt("SYS", history, [], PromptConfig(mode="plain"))
    demo = render_prompt("SYS", history, [HIT], PromptConfig(mode="demo"))
    assert demo[:3] == plain[:3] and demo[3:5] == DEMO and demo[5] == plain[3]


@pytest.mark.parametrize(
    "text,budget,expected",
    [
        ("One. Two. Three.", 0, "One. Two. Three."),
        ("One. Two. Three.", 100, "One. Two. Three."),
        ("One sentence here. Two sentence here. Three.", 10, "One sentence here. Two sentence here."),
        ("A very long single sentence without a stop", 2, "A very long single sentence without a stop"),
    ],
)
def test_trim_to_tokens(text: str, budget: int, expected: str) -> None:
    assert trim_to_tokens(text, budget) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("AGENT: Hi there.", "Hi there."),
        ("assistant:  Hi\n\n\n  there  now", "Hi\n\nthere now"),
    ],
)
def test_clean_exemplar(raw: str, expected: str) -> None:
    assert clean_exemplar(raw) == expected


def test_exemplar_token_budget_respected() -> None:
    long = Strategy(
        id="l", scenario="CUSTOMER: x", strategy="s", exemplar=" ".join(["This is a sentence."] * 60)
    )
    for mode in ("exemplar", "exemplar_system", "demo"):
        text = injected_text(long, mode, {"exemplar_tokens": 40})
        assert approx_tokens(text) <= 40
        rendered = render_prompt(
            "SYS", [U], [Hit(long, 0.9, 0)], PromptConfig(mode=mode, params={"exemplar_tokens": 40})
        )
        assert text in "".join(m["content"] for m in rendered)
    assert injected_text(long, "adapt", {}) == ""  # adapt puts nothing into the generation prompt


def test_retrieval_budget_uses_mode_cost(hash_pack: Path) -> None:
    fake = ScriptedChat(default="ok")
    agent = Agent.from_pack(
        hash_pack, student=fake, prompting={"mode": "exemplar"}, retrieval={"budget_tokens": 3}
    )
    history = [{"role": "user", "content": "my internet is down since yesterday"}]
    found = agent.retrieve(history)
    assert sum(approx_tokens(injected_text(h.strategy, "exemplar", {})) for h in found.hits) <= 3


def _exemplar_pack(tmp_path: Path, settings: PackSettings) -> Path:
    strategies = [
        Strategy(
            id="r",
            scenario="CUSTOMER: I want a refund for this month",
            strategy="Explain; offer credit.",
            compact="Explain partial months are not refunded.",
            exemplar="AGENT: I'm sorry, partial months are not refunded, but I can offer a credit.",
        )
    ]
    return build_pack(
        tmp_path / "pack",
        strategies,
        HashEmbedder(dim=32),
        domain={"name": "t", "company": "T", "system_prompt": "You help customers."},
        settings=settings,
    ).path


def test_pack_settings_drive_mode_and_decoding(tmp_path: Path) -> None:
    settings = PackSettings(retrieval={"threshold": 0.0}, prompting={"mode": "exemplar"},
                            generation={"repeat_penalty": 1.3, "max_tokens": 24})
    pack = _exemplar_pack(tmp_path, settings)
    fake = ScriptedChat(default="Sure.")
    agent = Agent.from_pack(pack, student=fake)
    reply = agent.reply([{"role": "user", "content": "I want a refund for this month"}])
    assert reply.mode == "exemplar"
    assert EXEMPLAR_NOTE in fake.calls[0][-1]["content"]
    assert (
        fake.configs[0] is not None
        and fake.configs[0].repeat_penalty == 1.3
        and fake.configs[0].max_tokens == 24
    )


@pytest.mark.real
def test_real_student_uses_tuned_pack_settings(tmp_path: Path, student_path: Path) -> None:
    """A real GGUF student loaded through the registry gets the pack's rendered prompt and decoding."""
    settings = PackSettings(retrieval={"threshold": 0.0}, prompting={"mode": "system+exemplar"},
                            generation={"repeat_penalty": 1.25, "max_tokens": 12})
    pack = _exemplar_pack(tmp_path, settings)
    agent = Agent.from_pack(load_pack(pack), None)
    seen: list[tuple[list[dict[str, str]], object]] = []
    real_stream = agent.student.stream

    def spy(messages, config=None):  # type: ignore[no-untyped-def]
        seen.append(([dict(m) for m in messages], config))
        return real_stream(messages, config)

    agent.student.stream = spy  # type: ignore[method-assign]
    reply = agent.reply([{"role": "user", "content": "I want a refund for this month"}])
    messages, config = seen[0]
    assert SYSTEM_NOTE in messages[0]["content"] and EXEMPLAR_NOTE in messages[-1]["content"]
    assert config.repeat_penalty == 1.25 and config.max_tokens == 12
    assert reply.text and 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.prompt_tokens == len(agent.student.tokenize_messages(messages)[0])  # type: ignore[attr-defined]
