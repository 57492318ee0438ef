"""RuntimeConfig: each variable parsed once at the edge, bad values as one-line errors, and nothing
below the edges reading the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edge_agent.errors import ConfigError
from edge_agent.runtime import RuntimeConfig, debug_enabled

PACKAGE = Path(__file__).resolve().parents[2] / "edge_agent"
# The edges: the CLI and the server read flags and the environment; runtime.py parses it; files.py
# reads EDGE_AGENT_HOME (the one home variable); server/config.py layers EDGE_AGENT_* over its file.
EDGES = {"cli.py", "runtime.py", "files.py", "server/config.py"}


def test_defaults_without_any_variable() -> None:
    assert RuntimeConfig.from_env({}) == RuntimeConfig() == RuntimeConfig(None, "auto", 1, False)


@pytest.mark.parametrize("env,field,value", [
    ({"EDGE_AGENT_THREADS": "2"}, "threads", 2),
    ({"EDGE_AGENT_THREADS": "auto"}, "threads", None),
    ({"EDGE_AGENT_THREADS": "0"}, "threads", None),
    ({"EDGE_AGENT_WAIT_POLICY": "Passive"}, "wait_policy", "passive"),
    ({"EDGE_AGENT_WAIT_POLICY": "active"}, "wait_policy", "active"),
    ({"EDGE_AGENT_EMBED_THREADS": "3"}, "embed_threads", 3),
    ({"EDGE_AGENT_DEBUG": "1"}, "debug", True),
    ({"EDGE_AGENT_DEBUG": ""}, "debug", False),
])
def test_each_variable_is_parsed(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(RuntimeConfig.from_env(env), field) == value


@pytest.mark.parametrize("var,value", [
    ("EDGE_AGENT_THREADS", "many"), ("EDGE_AGENT_THREADS", "-1"), ("EDGE_AGENT_WAIT_POLICY", "fast"),
    ("EDGE_AGENT_EMBED_THREADS", "x"), ("EDGE_AGENT_EMBED_THREADS", "0"),
])
def test_a_bad_value_is_a_one_line_error_naming_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        RuntimeConfig.from_env({var: value})
    assert var in str(err.value) and "\n" not in str(err.value)


def test_a_bad_value_in_code_is_refused_too() -> None:
    with pytest.raises(ConfigError, match="auto, spin, passive, active"):
        RuntimeConfig(wait_policy="sometimes")


def test_debug_reads_the_given_mapping() -> None:
    assert debug_enabled({"EDGE_AGENT_DEBUG": "yes"}) and not debug_enabled({})


def _environ_reads(path: Path) -> list[int]:
    """Lines of `path` that touch os.environ or os.getenv."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv") \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
    return lines


def test_nothing_below_the_edges_reads_the_environment() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel not in EDGES and _environ_reads(path):
            found[rel] = _environ_reads(path)
    assert found == {}, f"read the environment at the edge (RuntimeConfig.from_env) instead: {found}"
    assert _environ_reads(PACKAGE / "runtime.py")  # the check can see a read
