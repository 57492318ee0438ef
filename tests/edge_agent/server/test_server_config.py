"""Server settings: file <- environment <- flags, unknown keys, and the loopback/API-key rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent.cli import cli
from edge_agent.errors import ConfigError
from edge_agent.server.config import is_loopback, load_serve_config


def test_defaults_bind_loopback_without_key() -> None:
    cfg = load_serve_config(env={})
    assert (cfg.host, cfg.port, cfg.api_key, cfg.queue_size) == ("127.0.0.1", 8080, None, 8)


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "serve.toml"
    file.write_text('port = 9000\nqueue_size = 3\nrequest_timeout = 30\nmodel = "from-file"\n')
    env = {"EDGE_AGENT_QUEUE_SIZE": "5", "EDGE_AGENT_MODEL": "from-env", "EDGE_AGENT_HOME": "/elsewhere"}
    cfg = load_serve_config(file, env=env, flags={"model": "from-flag", "port": None})
    assert (cfg.port, cfg.queue_size, cfg.request_timeout, cfg.model) == (9000, 5, 30.0, "from-flag")


def test_config_file_from_env_and_serve_table(tmp_path: Path) -> None:
    file = tmp_path / "serve.toml"
    file.write_text("[serve]\nport = 9100\n")
    assert load_serve_config(env={"EDGE_AGENT_SERVE_CONFIG": str(file)}).port == 9100


@pytest.mark.parametrize("text,needle", [
    ("prot = 1\n", "unknown key 'prot' (did you mean 'port'?); valid keys: "),
    ("port = 'eighty'\n", "invalid setting port"),
    ("queue_size = 0\n", "invalid setting queue_size"),
    ("port = [\n", "not valid TOML"),
])
def test_bad_file_is_one_line_error(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "serve.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_serve_config(file, env={})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EDGE_AGENT_PORT"):
        load_serve_config(env={"EDGE_AGENT_PORT": "http"})


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.internal", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_refuses_public_bind_without_key() -> None:
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0 without an API key"):
        load_serve_config(env={}, flags={"host": "0.0.0.0"})
    cfg = load_serve_config(env={"EDGE_AGENT_API_KEY": "k" * 16}, flags={"host": "0.0.0.0"})
    assert cfg.api_key == "k" * 16 and "k" * 16 not in repr(cfg)


def test_serve_cli_refuses_public_bind_in_one_line() -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"], env={"EDGE_AGENT_API_KEY": ""})
    assert result.exit_code != 0
    assert "refusing to listen on 0.0.0.0 without an API key" in result.output
    assert len(result.output.strip().splitlines()) == 1
