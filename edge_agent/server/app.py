"""The HTTP layer: OpenAI-compatible routes over one `Agent`, its worker, auth and body limits.

`create_app(agent, config)` returns a FastAPI app; nothing here loads a model (see
`build_agent`) or binds a socket (see `edge_agent.server.cli`). Every error a client can cause is
answered as OpenAI-shaped JSON with a 4xx status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..agent import Agent
from ..files import home_dir
from ..runtime import RuntimeConfig
from ..textsafe import has_lone_surrogate
from .config import ServeConfig
from .limits import BodyLimit
from .page import add_page_routes
from .schemas import (
    ApiError,
    ChatRequest,
    bearer_authorizer,
    chunk_body,
    completion_body,
    extension,
    models_body,
    new_completion_id,
    validation_error,
)
from .worker import REQUEST_LOG, Event, GenerationWorker, Job, QueueFull

__all__ = ["build_agent", "create_app"]

log = logging.getLogger(__name__)
# Extra seconds the HTTP side waits past a job's deadline for the worker to report the timeout.
DEADLINE_SLACK_S = 5.0
POLL_S = 0.25


def build_agent(config: ServeConfig, runtime: RuntimeConfig | None = None) -> Agent:
    """The same agent `edge-agent chat` builds: pack + student + the pack's settings; `runtime` is
    what the server's startup read from the environment (default: `RuntimeConfig()`)."""
    from ..bundle import pack_model, resolve_pack

    pack = resolve_pack(config.pack) or Path(home_dir() / "packs" / "demo")  # a directory or an installed name
    # from_pack takes the template's path (read and checked where the model is resolved), not its text
    return Agent.from_pack(pack, pack_model(pack, config.model), chat_template=config.chat_template,
                           n_ctx=config.n_ctx, runtime=runtime)


class ClientGone(Exception):
    """The client closed the connection while its request waited."""


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _unencodable(data: Any) -> bool:
    """True when a string anywhere in `data` holds a lone surrogate (JSON allows "\\ud800"; UTF-8 does not)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return True
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return False


TOO_DEEP = "the request body is nested too deeply; send a flat chat request"


def _parse(body: bytes) -> ChatRequest:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc}); send a JSON object",
                       code="invalid_json") from None
    except RecursionError:
        raise ApiError(400, TOO_DEEP, code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    if _unencodable(data):
        raise ApiError(400, "the request holds a lone UTF-16 surrogate (such as \\ud800), which is not text; "
                            "send valid Unicode", code="invalid_text")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise ApiError(400, TOO_DEEP, code="invalid_json") from None


def create_app(agent: Agent, config: ServeConfig, *, model_id: str | None = None) -> FastAPI:
    """An app serving `agent`; its worker thread runs between lifespan startup and shutdown."""
    worker = GenerationWorker(agent, config.queue_size)
    model = model_id or config.model_id or str(getattr(agent.student, "name", "edge-agent"))
    created = int(time.time())
    authorize = bearer_authorizer(config.api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        await asyncio.to_thread(worker.stop, max(config.shutdown_grace, 1.0))

    app = FastAPI(title="edge-agent", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)


    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        REQUEST_LOG.info(json.dumps({"path": request.url.path, "outcome": "rejected", "status": exc.status,
                                     "error": exc.code}))
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                        code=code))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(ApiError(400, str(exc.errors()[0].get("msg", "invalid request")),
                                        code="invalid_value"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
        return _error_response(ApiError(500, f"internal error ({type(exc).__name__}); see the server log",
                                        type="server_error", code="internal_error"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model, **worker.status()}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return models_body(model, created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        req = _parse(await request.body())
        history = req.history()
        if not any(m["role"] != "system" for m in history):
            raise ApiError(400, "messages holds no user message; add one to reply to", param="messages",
                           code="empty_messages")
        if history[-1]["role"] != "user" or not history[-1]["content"].strip():
            raise ApiError(400, "the last message must be a non-empty user message", param="messages",
                           code="invalid_conversation")
        cap = req.reply_cap()
        if cap is not None and cap > config.max_tokens_limit:
            param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise ApiError(400, f"{param} {cap} is above this server's limit of {config.max_tokens_limit}; "
                                "ask for fewer", param=param, code="max_tokens_too_large")
        extra_stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        # a client's stop sequences add to the model's own (which keep the student from role-playing)
        stop = list(dict.fromkeys([*agent.generation.stop, *(s for s in extra_stop if s)])) if extra_stop else None
        generation = agent.generation.merged(max_tokens=cap or config.default_max_tokens,
                                             temperature=req.temperature, top_p=req.top_p, stop=stop, seed=req.seed)
        cid = new_completion_id()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop has closed (shutdown); nobody is listening
                pass

        job = Job(history, generation, emit, config.request_timeout, meta={"id": cid, "stream": req.stream})
        try:
            worker.submit(job)
        except QueueFull as full:
            raise ApiError(429, f"the model is busy ({config.queue_size} requests waiting); retry in "
                                f"{full.retry_after} s", type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": str(full.retry_after)}) from None
        finished = False
        try:
            kind, value = await _next(job, events, request)
            if kind == "error":
                finished = True
                return _error_response(value)
            if req.stream:
                finished = True  # from here the stream generator owns the job
                return JobStream(job, _stream(job, events, cid, model))
            while kind != "done":
                kind, value = await _next(job, events, request)
                if kind == "error":
                    finished = True
                    return _error_response(value)
            finished = True
            return JSONResponse(completion_body(cid, model, job.reply, _ext(job)))
        except ClientGone:
            return Response(status_code=499)
        finally:
            if not finished:
                job.cancel.set()

    add_page_routes(app, agent, config, model)
    return app


class JobStream(StreamingResponse):
    """SSE for one job; however the response ends (done, disconnect, shutdown), the job is stopped.

    The generator's own cleanup is not enough: a client that leaves before the first chunk is sent
    cancels the response before the generator ever starts, so its `finally` never runs.
    """

    def __init__(self, job: Job, content: AsyncIterator[str]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.job = job

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel.set()  # a no-op once the worker has finished the job


def _ext(job: Job) -> dict[str, Any]:
    timings = dict(job.reply.timings) if job.reply is not None else {}
    timings["queue_ms"] = ((job.started or job.submitted) - job.submitted) * 1e3
    return extension(job.reply, job.trimmed, timings)


async def _next(job: Job, events: asyncio.Queue[Event], request: Request | None) -> Event:
    """The job's next event; gives up at its deadline, or when `request`'s client disconnects.

    The client is checked every POLL_S even while events keep coming: a non-streamed reply's pieces
    arrive faster than the poll, and a client that left must stop its generation all the same.
    """
    while True:
        remaining = job.deadline + DEADLINE_SLACK_S - time.monotonic()
        if remaining <= 0:
            job.cancel.set()
            return ("error", ApiError(504, f"the request took longer than {job.timeout:g} s; retry later",
                                      type="timeout_error", code="timeout"))
        if request is not None and time.monotonic() - job.client_checked >= POLL_S:
            job.client_checked = time.monotonic()
            if await request.is_disconnected():
                job.cancel.set()
                raise ClientGone()
        try:
            return await asyncio.wait_for(events.get(), timeout=min(POLL_S, remaining))
        except TimeoutError:
            continue


async def _stream(job: Job, events: asyncio.Queue[Event], cid: str, model: str) -> AsyncIterator[str]:
    """SSE chunks; a disconnect cancels this generator, which tells the worker to stop."""
    created = int(time.time())
    done = False
    try:
        yield _sse(chunk_body(cid, model, created, {"role": "assistant", "content": ""}))
        while True:
            kind, value = await _next(job, events, None)
            if kind == "piece":
                yield _sse(chunk_body(cid, model, created, {"content": value}))
            elif kind == "done":
                done = True
                yield _sse(chunk_body(cid, model, created, {}, finish_reason=job.reply.finish_reason,
                                      reply=job.reply, ext=_ext(job)))
                yield "data: [DONE]\n\n"
                return
            elif kind == "error":
                done = True
                yield _sse(value.body())  # OpenAI clients raise on an error event mid-stream
                return
    finally:
        if not done:
            job.cancel.set()
