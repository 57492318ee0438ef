"""Property tests (hypothesis): arbitrary text, bytes and JSON never give a traceback, a 5xx or a hang.

Each loader may refuse its input, but only with its documented one-line error type; the chat loop
answers every line; the server answers every body with a status below 500.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.agent import Agent, mock_student
from edge_agent.cli import parse_key_values
from edge_agent.cli_chat import chat_session
from edge_agent.convtest.suite import SuiteError, parse_suite
from edge_agent.domain import parse_domain
from edge_agent.errors import ConfigError, PackError
from edge_agent.library import read_library
from edge_agent.retrieval import RetrievalConfig
from edge_agent.textsafe import decode_line
from tests.server_support import loopback_only, running_server

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=20)


def tables(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts whose keys are mostly the known ones, with arbitrary values (what a hand-edited TOML holds)."""
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=10)), json_values, max_size=6)


# --- chat stdin ----------------------------------------------------------------------------------------------
@FAST
@given(data=st.binary(max_size=600))
def test_chat_answers_any_bytes(hash_pack: Path, data: bytes) -> None:
    agent = Agent.from_pack(hash_pack, student=mock_student())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        refused = chat_session(agent, as_json=True, explain=False, interactive=False, stdin=io.BytesIO(data))
    answered = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = [decode_line(raw).strip() for raw in io.BytesIO(data)]
    assert refused == 0
    assert [a["customer"] for a in answered] == [e for e in expected if e]
    assert all(a["text"] for a in answered)


# --- --set ---------------------------------------------------------------------------------------------------
@FAST
@given(pairs=st.lists(st.one_of(st.text(max_size=30), st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    ["top_k", "threshold", "query_turns", "dedupe", "budget_tokens", "candidates", "x"]), st.text(max_size=12))),
    max_size=4))
def test_set_values_are_settings_or_one_line_errors(pairs: list[str]) -> None:
    try:
        RetrievalConfig.from_mapping(parse_key_values(pairs))
    except (ConfigError, click.BadParameter):
        pass


# --- the loaders ---------------------------------------------------------------------------------------------
@FAST
@given(data=st.fixed_dictionaries({}, optional={
    "domain": st.one_of(tables(["name", "company", "agent_role", "goal", "language", "greeting"]), json_values),
    "policy": st.one_of(tables(["text"]), json_values),
    "rules": st.one_of(st.lists(tables(["id", "kind", "pattern", "description", "severity", "examples"]),
                                max_size=3), json_values),
    "intents": st.one_of(st.lists(tables(["id", "description", "customer_goal", "opening"]), max_size=3),
                         json_values),
    "personas": json_values, "retrieval": json_values,
}))
def test_domain_loader_refuses_with_config_errors_only(data: dict[str, Any]) -> None:
    try:
        parse_domain(data).system_prompt()
    except ConfigError:
        pass


@FAST
@given(data=st.fixed_dictionaries({}, optional={
    "suite": st.one_of(tables(["name", "description"]), json_values),
    "defaults": st.one_of(tables(["must_not_match", "max_words", "similar_threshold"]), json_values),
    "conversations": st.one_of(st.lists(tables(["id", "turns", "tags", "history", "description"]), max_size=3),
                               json_values),
}))
def test_suite_loader_refuses_with_suite_errors_only(data: dict[str, Any]) -> None:
    try:
        parse_suite(data)
    except (SuiteError, ConfigError):
        pass


@FAST
@given(lines=st.lists(st.one_of(st.binary(max_size=80), st.builds(lambda v: json.dumps(v).encode(), json_values)),
                      max_size=5))
def test_library_loader_refuses_with_pack_errors_only(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "lib.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        read_library(path)
    except PackError:
        pass


# --- the server body -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from edge_agent.embedder import HashEmbedder
    from edge_agent.pack import build_pack
    from tests.conftest import make_strategies

    pack = build_pack(tmp_path_factory.mktemp("p") / "pack", make_strategies(4), HashEmbedder(dim=16)).path
    with loopback_only(), running_server(Agent.from_pack(pack, student=mock_student())) as base:
        yield base


messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "x"]),
                                           "content": st.one_of(st.text(max_size=60), json_values)}), max_size=4)
bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda m, extra: json.dumps({"messages": m, **extra}).encode(), messages,
              tables(["stream", "max_tokens", "temperature", "top_p", "stop", "seed", "model", "n", "tools"])),
    st.builds(lambda t: b'{"messages": [{"role": "user", "content": "' + t.encode("utf-8", "surrogatepass") + b'"}]}',
              st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)),
)


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_server_never_answers_5xx(server: str, body: bytes) -> None:
    with httpx.Client(timeout=10) as http:
        response = http.post(server + "/v1/chat/completions", content=body,
                             headers={"content-type": "application/json"})
    assert response.status_code < 500, (body[:200], response.text[:300])
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


def test_chat_json_is_one_line_per_turn_even_with_unicode_line_breaks(hash_pack: Path) -> None:
    """U+0085, U+2028 and U+2029 are valid raw in JSON, but str.splitlines() splits on them."""
    agent = Agent.from_pack(hash_pack, student=mock_student())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        chat_session(agent, as_json=True, explain=False, interactive=False,
                     stdin=io.BytesIO("a\u0085b\u2028c\n".encode()))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["customer"] == "a\u0085b\u2028c"
