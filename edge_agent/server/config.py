"""Settings of `edge-agent serve`: a TOML file, then `EDGE_AGENT_*` variables, then flags.

Each layer overrides the one before; unknown keys in the file are errors. This module only
reads and validates settings; it loads no model and opens no socket.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..keys import check_keys

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "ServeConfig", "is_loopback", "load_serve_config"]

ENV_PREFIX = "EDGE_AGENT_"
CONFIG_ENV = "EDGE_AGENT_SERVE_CONFIG"


class ServeConfig(BaseModel):
    """Every setting of the server; the env name of `queue_size` is EDGE_AGENT_QUEUE_SIZE."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pack: Path | None = Field(None, description="pack directory (default: the demo pack)")
    model: str | None = Field(None, description="registered model name or GGUF path")
    chat_template: Path | None = Field(None, description="Jinja chat template for a GGUF without one")
    n_ctx: int | None = Field(None, ge=256, le=131072, description="context window in tokens")
    host: str = Field("127.0.0.1", min_length=1, description="address to bind")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 = any free port)")
    api_key: str | None = Field(None, min_length=8, repr=False, description="bearer key clients must send")
    model_id: str | None = Field(None, description="model name reported by the API (default: the model's)")
    queue_size: int = Field(8, ge=1, le=1024, description="requests that may wait for the model")
    request_timeout: float = Field(120.0, gt=0, le=3600, description="seconds per request, queueing included")
    max_body_bytes: int = Field(1_000_000, ge=1024, le=100_000_000, description="largest request body")
    max_tokens_limit: int = Field(2048, ge=1, le=32768, description="largest max_tokens a client may ask")
    default_max_tokens: int | None = Field(None, ge=1, description="reply cap when a client sends none")
    shutdown_grace: float = Field(10.0, ge=0, le=600, description="seconds in-flight requests get on SIGTERM")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$", description="log verbosity")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for localhost and any loopback IPv4/IPv6 address; names other than localhost are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix the syntax") from None
    if "serve" in data and isinstance(data["serve"], dict) and len(data) == 1:
        data = data["serve"]  # a [serve] table is accepted as well as top-level keys
    check_keys(data, ServeConfig.model_fields, f"config file {path}")
    return dict(data)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    # Only the server's own names are read: other EDGE_AGENT_* variables belong to other commands.
    return {key: env[env_name(key)] for key in ServeConfig.model_fields if env.get(env_name(key), "") != ""}


def load_serve_config(
    file: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> ServeConfig:
    """Merge file <- environment <- flags (None flags are unset) and validate the result.

    The file is `file`, else $EDGE_AGENT_SERVE_CONFIG when set. Refuses a non-loopback host
    without an API key.
    """
    env = os.environ if env is None else env
    path = file or env.get(CONFIG_ENV) or None
    values: dict[str, Any] = _from_file(Path(path)) if path else {}
    values.update(_from_env(env))
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        config = ServeConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid setting {key}: {first['msg']} (flag --{key.replace('_', '-')}, "
                          f"env {env_name(key)})") from None
    if not config.loopback and not config.api_key:
        raise ConfigError(f"refusing to listen on {config.host} without an API key; set --api-key or "
                          f"{env_name('api_key')}, or bind 127.0.0.1")
    return config
