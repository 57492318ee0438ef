"""Tuning on fakes: a known best mode wins, violations constrain, the cache and the pack update work."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.roles.cache import CachedChat
from distill.tuning.cli import derive_compact_command
from distill.tuning.compact import derive_compact, fill_compact
from distill.tuning.data import parse_dev_rows, split_dev
from distill.tuning.tune import Candidate, candidate_grid, format_table, make_agent_factory, tune
from edge_agent.backends import GenerationConfig, Message, ScriptedChat
from edge_agent.embedder import HashEmbedder
from edge_agent.index import ExactIndex
from edge_agent.library import Strategy, read_library, write_library
from edge_agent.pack import load_pack, update_settings
from edge_agent.policy import PolicyRule
from edge_agent.rendering import EXEMPLAR_NOTE, SYSTEM_NOTE
from edge_agent.retrieval import RetrievalConfig, Retriever

TOPICS = [
    "router lights blinking orange",
    "bill higher than usual",
    "moving house next month",
    "speed slow at night",
]
REF = {t: f"reference answer about {t} with clear steps" for t in TOPICS}
RULE = PolicyRule(id="promise", kind="forbidden_promise", pattern=r"full refund")


def _student(messages: Sequence[Message]) -> str:
    """Copies the exemplar when shown one; promises a refund when given system notes; else rambles."""
    text = "\n".join(m["content"] for m in messages)
    for topic, ref in REF.items():
        if EXEMPLAR_NOTE in text and ref in text:
            return ref
    if SYSTEM_NOTE in text:
        topic = next(t for t in TOPICS if t in messages[-1]["content"])
        return f"{REF[topic]} and a full refund"
    return "hello there, how can I help you today"


def _setup(student: ScriptedChat) -> tuple:
    strategies = [
        Strategy(id=f"s{i}", scenario=f"CUSTOMER: {t}", strategy="s", compact="Be precise.", exemplar=REF[t])
        for i, t in enumerate(TOPICS)
    ]
    emb = HashEmbedder(dim=64)
    vectors = emb.embed([s.scenario for s in strategies])
    retriever = Retriever(
        emb,
        ExactIndex(vectors),
        strategies,
        vectors,
        RetrievalConfig(threshold=0.0, top_k=1, budget_tokens=500),
    )
    items = parse_dev_rows(
        [{"id": t, "scenario": f"CUSTOMER: hi, my {t}", "teacher_reply": REF[t]} for t in TOPICS]
    )
    return make_agent_factory(student, "SYS", retriever, GenerationConfig(), [RULE]), items, emb


def test_known_best_mode_wins_and_violations_constrain() -> None:
    factory, items, emb = _setup(ScriptedChat(_student))
    candidates = candidate_grid(["system", "exemplar", "compact"])
    result = tune(factory, items, candidates, emb, [RULE])
    rows = {r.name: r for r in result.rows}
    assert result.best.name == "exemplar"
    assert rows["exemplar"].similarity.mean == pytest.approx(1.0, abs=1e-5)
    # "system" is close to the reference too, but it promises refunds the base never does
    assert rows["system"].violation_rate == 1.0 and not rows["system"].feasible
    assert rows["plain"].diff.mean == 0.0 and rows["exemplar"].diff.mean > 0
    assert "*exemplar" in format_table(result)


def test_without_constraint_violating_mode_would_win() -> None:
    def student(messages: Sequence[Message]) -> str:
        out = _student(messages)
        return (
            out.replace(" and a full refund", "")
            if SYSTEM_NOTE in "".join(m["content"] for m in messages)
            else out
        )

    factory, items, emb = _setup(ScriptedChat(student))
    result = tune(factory, items, candidate_grid(["system", "compact"]), emb, [RULE])
    assert result.best.name == "system"


def test_grid_and_decoding_overrides_reach_student() -> None:
    fake = ScriptedChat(_student)
    factory, items, emb = _setup(fake)
    candidates = candidate_grid(["exemplar"], [{"repeat_penalty": 1.0}, {"repeat_penalty": 1.2}])
    assert [c.name for c in candidates] == [
        "plain (repeat_penalty=1.0)",
        "exemplar (repeat_penalty=1.0)",
        "plain (repeat_penalty=1.2)",
        "exemplar (repeat_penalty=1.2)",
    ]
    tune(factory, items, candidates, emb)
    assert sorted({c.repeat_penalty for c in fake.configs if c}) == [1.0, 1.2]


def test_cache_answers_repeated_calls(tmp_path: Path) -> None:
    fake = ScriptedChat(["first", "second"])
    cached = CachedChat(fake, tmp_path / "c.sqlite", model_id="m1")
    msgs = [{"role": "user", "content": "hi"}]
    assert cached.chat(msgs).text == "first"
    assert cached.chat(msgs).text == "first" and len(fake.calls) == 1 and cached.ledger.count("scripted") == (1, 1)
    assert cached.chat(msgs, GenerationConfig(max_tokens=5)).text == "second"  # other settings, other key
    again = CachedChat(ScriptedChat([]), tmp_path / "c.sqlite", model_id="m1")  # persisted
    assert again.chat(msgs).text == "first"
    other_model = CachedChat(ScriptedChat(["x"]), tmp_path / "c.sqlite", model_id="m2")
    assert other_model.chat(msgs).text == "x"


def test_split_keeps_conversations_together() -> None:
    rows = [
        {
            "id": f"{c}-{k}",
            "scenario": f"CUSTOMER: open {c}" + "".join(f"\n\nAGENT: a\n\nCUSTOMER: t{j}" for j in range(k)),
            "teacher_reply": "r",
        }
        for c in range(6)
        for k in range(3)
    ]
    items = parse_dev_rows(rows)
    dev, rest = split_dev(items, 0.5, seed=1)
    assert len(dev) + len(rest) == 18 and len(dev) == 9
    assert {i.id.split("-")[0] for i in dev}.isdisjoint({i.id.split("-")[0] for i in rest})
    assert split_dev(items, 0.5, seed=1) == (dev, rest)


def test_update_settings_keeps_pack_valid(hash_pack: Path) -> None:
    update_settings(
        hash_pack,
        prompting={"mode": "adapt", "params": {"min_score": 0.5}},
        generation={"repeat_penalty": 1.1},
        tuning={"best": "adapt"},
    )
    pack = load_pack(hash_pack)  # hashes of listed files still verify
    assert pack.settings.tables["prompting"] == {"mode": "adapt", "params": {"min_score": 0.5}}
    assert pack.settings.tables["generation"] == {"repeat_penalty": 1.1}
    assert pack.settings.retrieval.threshold == 0.2 and pack.manifest["tuning"] == {"best": "adapt"}


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "Guideline List:\n1. **Empathy:**\n    - **Behavior to Emulate:** Show empathy.\n"
            "    - **Behavior to Avoid:** Being cold.\n2. **Policy:**\n    - Explain the policy clearly",
            "Show empathy. Explain the policy clearly.",
        ),
        (
            '1. **Offer Hope and Alternatives:**\n   - Good Agent: "We can offer credits."',
            "Offer hope and alternatives.",
        ),
        ('- **Example:** "Sure."\n- **Action:** Give specific details', "Give specific details."),
        ("Apologise once and offer a credit", "Apologise once and offer a credit."),
    ],
)
def test_derive_compact(text: str, expected: str) -> None:
    assert derive_compact(text) == expected


def test_derive_compact_budget_and_fill() -> None:
    text = "\n".join(
        f"{i}. **Item:**\n   - Do thing number {i} carefully and completely" for i in range(1, 9)
    )
    out = derive_compact(text, max_sentences=3, max_tokens=20)
    assert len(out) <= 80 and out.count(".") <= 3
    strategies = [
        Strategy(id="a", scenario="x", strategy="Be kind"),
        Strategy(id="b", scenario="y", strategy="Be kind", compact="Keep me."),
    ]
    filled, changed = fill_compact(strategies, derive_compact)
    assert [s.compact for s in filled] == ["Be kind.", "Keep me."] and changed == 1


def test_derive_compact_command(tmp_path: Path) -> None:
    lib = tmp_path / "lib.jsonl"
    write_library(lib, [Strategy(id="a", scenario="x", strategy='1. **Be Kind:**\n   - Good Agent: "hi"')])
    result = CliRunner().invoke(derive_compact_command, [str(lib), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    assert read_library(tmp_path / "out.jsonl")[0].compact == "Be kind."
    assert "1 of 1 compact forms" in result.output


def test_candidate_names() -> None:
    assert Candidate("adapt", {"revise": True}).name == "adapt (revise=True)"
    assert Candidate("adapt", label="x").name == "x"


def test_tune_command_writes_best_into_pack(
    hash_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from distill.tuning import run
    from distill.tuning.tune import make_agent_factory as real_factory

    pack = load_pack(hash_pack)

    def copier(messages: Sequence[Message]) -> str:  # repeats the exemplar when it is shown one
        lines = messages[-1]["content"].split("\n")
        return lines[lines.index(EXEMPLAR_NOTE) + 1] if EXEMPLAR_NOTE in lines else "hello there"

    fake = CachedChat(ScriptedChat(copier), tmp_path / "calls.sqlite", "fake")

    def fake_setup(p, model, cache_path, scorer=None, runtime=None):  # type: ignore[no-untyped-def]
        retriever = Retriever(
            p.open_embedder(), p.index, p.strategies, p.vectors, RetrievalConfig(threshold=0.0, top_k=1)
        )
        return run.TuningSetup(
            real_factory(fake, p.system_prompt, retriever, GenerationConfig(), []),
            HashEmbedder(dim=64),
            [],
            fake,
            "fake",
            GenerationConfig(),
        )

    monkeypatch.setattr(run, "build_tuning", fake_setup)
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        "\n".join(
            json.dumps({"scenario": f"CUSTOMER: {s.scenario[10:]}", "teacher_reply": s.exemplar})
            for s in pack.strategies[:4]
        ),
        encoding="utf-8",
    )
    from distill.tuning.cli import tune_command

    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        tune_command,
        [
            "--pack",
            str(hash_pack),
            "--dev",
            str(dev),
            "--modes",
            "compact,exemplar",
            "--repeat-penalty",
            "1.1",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    tuned = load_pack(hash_pack)
    assert tuned.settings.tables["prompting"] == {"mode": "exemplar", "params": {}}
    assert tuned.settings.generation.repeat_penalty == 1.1
    assert json.loads(report.read_text())["best"]["name"] == "exemplar (repeat_penalty=1.1)"
    assert report.with_suffix(".txt").read_text().count("\n") == 5  # header, rule, 3 rows
