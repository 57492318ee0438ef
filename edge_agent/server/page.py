"""The chat page of `edge-agent serve`: `/`, its two static files and the two small JSON routes it uses.

The page is plain HTML/CSS/JS shipped in `edge_agent/server/static/` (no CDN, no build step). It
talks to the same `/v1/chat/completions` API as any client; this module adds no way to chat.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..agent import Agent
from .config import ServeConfig
from .schemas import ApiError, bearer_authorizer

__all__ = ["CSP", "add_page_routes"]

# Only this server's own files and API: an injected <script> or <img onerror> could not run even if
# text were ever put into the page as HTML (it never is: the page sets textContent only).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
STATIC = {"chat.js": "text/javascript; charset=utf-8", "chat.css": "text/css; charset=utf-8"}
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def asset(name: str) -> bytes:
    return (importlib.resources.files("edge_agent.server") / "static" / name).read_bytes()


def add_page_routes(app: FastAPI, agent: Agent, config: ServeConfig, model: str) -> None:
    """Serve the chat page at `/`; the page needs the API key only when the server was given one."""
    files = {name: asset(name) for name in ("index.html", *STATIC)}
    authorize = bearer_authorizer(config.api_key)
    by_id = {s.id: s for s in (agent.pack.strategies if agent.pack is not None else [])}
    company = agent.pack.manifest.company if agent.pack is not None else ""

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(files["index.html"], media_type="text/html; charset=utf-8",
                        headers={**HEADERS, "Content-Security-Policy": CSP})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise ApiError(404, f"GET /static/{name}: no such file; the page uses {', '.join(STATIC)}",
                           code="not_found")
        return Response(files[name], media_type=STATIC[name], headers=HEADERS)

    @app.get("/ui/info", include_in_schema=False)
    async def info() -> dict[str, Any]:
        # No secrets here: whether a key is needed, and names the page shows in its title.
        return {"key_required": bool(config.api_key), "model": model, "company": company}

    @app.get("/ui/strategy/{sid}", include_in_schema=False)
    async def strategy(sid: str, request: Request) -> JSONResponse:
        authorize(request)
        found = by_id.get(sid)
        if found is None:
            raise ApiError(404, f"no strategy {sid!r} in this server's pack", code="not_found")
        return JSONResponse({"id": found.id, "scenario": found.scenario, "compact": found.compact,
                             "status": found.status}, headers=HEADERS)
