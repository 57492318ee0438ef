"""The `edge-agent serve` command: read settings, load the agent once, run uvicorn.

Settings come from a TOML file, then EDGE_AGENT_* variables, then these flags (see config.py).
Logs go to stderr: one JSON line per request on the `edge_agent.server.requests` logger.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import click

from .config import CONFIG_ENV, load_serve_config

__all__ = ["serve_command"]


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    requests = logging.getLogger("edge_agent.server.requests")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))  # the records are JSON already
    requests.addHandler(handler)
    requests.propagate = False
    requests.setLevel(logging.INFO)


# Idle keep-alive connections stay open longer than the longest Retry-After we send (60 s): with
# uvicorn's default of 5 s, a client that waited a whole-second Retry-After of about 5 s and reused
# its connection raced the server's close and got a ReadError (the load test's one unintended error).
KEEP_ALIVE_S = 75


@click.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"TOML file with any of the settings below (or set {CONFIG_ENV}).")
@click.option("--pack", type=click.Path(path_type=Path), default=None,
              help="Pack directory [EDGE_AGENT_PACK] (default: $EDGE_AGENT_HOME/packs/demo).")
@click.option("--model", default=None, help="Registered model name or GGUF path [EDGE_AGENT_MODEL].")
@click.option("--chat-template", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Jinja chat template for a GGUF without one [EDGE_AGENT_CHAT_TEMPLATE].")
@click.option("--n-ctx", type=int, default=None, help="Context window in tokens [EDGE_AGENT_N_CTX].")
@click.option("--host", default=None, help="Address to bind [EDGE_AGENT_HOST] (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port [EDGE_AGENT_PORT] (default 8080).")
@click.option("--api-key", default=None,
              help="Bearer key clients must send [EDGE_AGENT_API_KEY]; required off loopback.")
@click.option("--model-id", default=None, help="Model name the API reports [EDGE_AGENT_MODEL_ID].")
@click.option("--queue-size", type=int, default=None,
              help="Requests that may wait for the model; more get 429 [EDGE_AGENT_QUEUE_SIZE] (default 8).")
@click.option("--request-timeout", type=float, default=None,
              help="Seconds per request, queueing included [EDGE_AGENT_REQUEST_TIMEOUT] (default 120).")
@click.option("--max-body-bytes", type=int, default=None,
              help="Largest request body [EDGE_AGENT_MAX_BODY_BYTES] (default 1000000).")
@click.option("--max-tokens-limit", type=int, default=None,
              help="Largest max_tokens a client may ask [EDGE_AGENT_MAX_TOKENS_LIMIT] (default 2048).")
@click.option("--default-max-tokens", type=int, default=None,
              help="Reply cap when a client sends none [EDGE_AGENT_DEFAULT_MAX_TOKENS] (default: the pack's).")
@click.option("--shutdown-grace", type=float, default=None,
              help="Seconds in-flight requests get on SIGTERM [EDGE_AGENT_SHUTDOWN_GRACE] (default 10).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="[EDGE_AGENT_LOG_LEVEL] (default info).")
def serve_command(config_file: Path | None, **flags: Any) -> None:
    """Serve the agent over an OpenAI-compatible HTTP API (chat completions, streaming).

    \b
    Examples:
      edge-agent serve
      edge-agent serve --pack ./mypack --model ./my-model.gguf --port 8081
      EDGE_AGENT_API_KEY=$(openssl rand -hex 16) edge-agent serve --host 0.0.0.0
      curl -N localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"model": "x", "stream": true, "messages": [{"role": "user", "content": "My bill is wrong"}]}'
    """
    import uvicorn

    from ..cli import runtime_config
    from .app import build_agent, create_app
    from .loading import LoadingApp

    config = load_serve_config(config_file, flags=flags)
    runtime = runtime_config()
    _setup_logging(config.log_level)
    auth = "API key required" if config.api_key else "no API key"

    def load() -> Any:
        agent = build_agent(config, runtime)
        click.echo(f"edge-agent serve: model {agent.student.name}, pack {agent.pack.path if agent.pack else '-'}, "
                   f"http://{config.host}:{config.port}/v1 ({auth}); chat page at /", err=True)
        return create_app(agent, config)

    # The port answers at once (the chat page, and 503 "model_loading") while the model loads.
    app = LoadingApp(load)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_config=None, log_level=config.log_level, access_log=False,
        server_header=False, timeout_graceful_shutdown=math.ceil(config.shutdown_grace),
        timeout_keep_alive=KEEP_ALIVE_S))
    app.on_error = lambda _: setattr(server, "should_exit", True)
    server.run()
    if app.error is not None:
        raise app.error  # the CLI prints an EdgeAgentError as one line
    if not server.started:
        sys.exit(3)  # uvicorn could not bind; it has logged why
