"""An OpenAI-compatible HTTP API over one model: chat and text completions (streamed or not), models, health.

Why OpenAI's wire format: every editor plugin, agent framework and SDK already
speaks it, so a specialist model is usable the moment it is served. Chat
prompts go through the model's saved chat template, the renderer training used,
so the served model reads exactly the layout it learned.

Limits are part of the contract, each a clean OpenAI-style JSON error:
401 (API key), 400 (malformed request, max_tokens over the cap, prompt longer
than the context), 413 (body over max_request_bytes), 429 (queue full),
408 (the request ran past its time limit). A streamed response that hits its
limit after the headers were sent ends with an `error` chunk, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import ServeError
from .backends import Event, GenParams, render_chat
from .scheduler import Job, QueueFull, Scheduler


@dataclass
class Limits:
    max_request_bytes: int = 1_000_000
    max_tokens: int = 1024          # the cap a request may ask for
    default_max_tokens: int = 256   # when a request does not say
    timeout_s: float = 120.0        # per request, queueing included
    max_queue: int = 16
    max_batch: int = 8


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _error_response(e: APIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


# ---------------------------------------------------------------- request bodies


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user, logit_bias...)

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stream: bool = False
    stop: str | list[str] | None = None
    n: int = 1


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = ""


class ChatRequest(_Common):
    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Common):
    prompt: str | list[str]


def _text_of(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for p in content:
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise APIError(400, "only text content parts are supported", param="messages")
        parts.append(p["text"])
    return "".join(parts)


# ---------------------------------------------------------------- the app


class Server:
    """The app's state: backend, limits, key and the scheduler (created when the app starts)."""

    def __init__(self, backend, model_id: str, limits: Limits, api_key: str | None):
        self.backend = backend
        self.model_id = model_id
        self.limits = limits
        self.api_key = api_key or None
        self.scheduler: Scheduler | None = None
        self.started = int(time.time())

    def authorize(self, request: Request) -> None:
        if not self.api_key:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise APIError(401, "invalid or missing API key (send Authorization: Bearer KEY)",
                           "authentication_error", "invalid_api_key")

    async def read_json(self, request: Request) -> dict:
        """The JSON body, refused with 413 as soon as it is known to be too big (header or bytes read)."""
        cap = self.limits.max_request_bytes
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            raise APIError(400, "bad Content-Length header") from None
        if declared > cap:
            raise APIError(413, f"request body of {declared} bytes is over the limit of {cap}",
                           code="request_too_large")
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > cap:
                raise APIError(413, f"request body is over the limit of {cap} bytes", code="request_too_large")
        try:
            body = json.loads(buf)
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        return body

    def params(self, req: _Common, max_tokens: int | None) -> GenParams:
        if req.n != 1:
            raise APIError(400, "only n=1 is supported", param="n")
        mt = max_tokens if max_tokens is not None else min(self.limits.default_max_tokens, self.limits.max_tokens)
        if mt > self.limits.max_tokens:
            raise APIError(400, f"max_tokens={mt} is over this server's cap of {self.limits.max_tokens}",
                           param="max_tokens", code="max_tokens_over_cap")
        return GenParams(max_tokens=mt, temperature=req.temperature, top_p=req.top_p, seed=req.seed)

    def job(self, prompt_text: str, params: GenParams) -> Job:
        ids = self.backend.encode(prompt_text)
        ctx = self.backend.context_length
        if ctx and len(ids) >= ctx:
            raise APIError(400, f"the prompt is {len(ids)} tokens; this model's context is {ctx}",
                           param="messages", code="context_length_exceeded")
        job = Job(prompt=ids, params=params, deadline=time.monotonic() + self.limits.timeout_s)
        try:
            self.scheduler.submit(job)
        except QueueFull:
            raise APIError(429, f"the server is busy ({self.limits.max_queue} requests queued); retry later",
                           "rate_limit_error", "queue_full") from None
        return job


def _stops(stop: str | list[str] | None) -> list[str]:
    s = [stop] if isinstance(stop, str) else list(stop or [])
    if len(s) > 4 or any(not x for x in s):
        raise APIError(400, "stop: up to 4 non-empty strings", param="stop")
    return s


class _Collector:
    """Turns a job's events into text, cutting at stop strings (and holding back a possible partial one)."""

    def __init__(self, job: Job, stops: list[str], timeout_s: float):
        self.job, self.stops, self.timeout_s = job, stops, timeout_s
        self.text = ""      # everything produced (up to a stop string)
        self.emitted = 0    # how much of it has been streamed
        self.tokens = 0
        self.finish: str | None = None
        self.error: str | None = None

    async def next(self) -> str | None:
        """The next piece that is safe to send, "" when there is none yet, None once finished."""
        if self.finish:
            return None
        remaining = self.job.deadline - time.monotonic()
        try:
            ev: Event = await asyncio.wait_for(self.job.events.get(), timeout=max(remaining, 0.001) + 1.0)
        except TimeoutError:
            self.job.cancelled = True
            ev = Event(0, finish="timeout")
        self.tokens += ev.tokens
        if ev.finish == "error":
            self.error, ev.text = ev.text, ""
        self.text += ev.text
        for s in self.stops:
            at = self.text.find(s)
            if at >= 0:
                self.text = self.text[:at]
                self.job.cancelled = True
                ev.finish = "stop"
        if ev.finish:
            self.finish = ev.finish
            piece = self.text[self.emitted:]
        else:
            hold = max((len(s) - 1 for s in self.stops), default=0)
            safe = max(self.emitted, len(self.text) - hold)
            piece = self.text[self.emitted:safe]
        self.emitted += len(piece)
        return piece

    def check(self) -> None:
        if self.finish == "timeout":
            raise APIError(408, f"the request ran past this server's time limit of {self.timeout_s:g}s",
                           "timeout_error", "timeout")
        if self.finish == "error":
            raise APIError(500, self.error or "generation failed", "server_error", "generation_failed")

    @property
    def finish_reason(self) -> str:
        return "length" if self.finish == "length" else "stop"


def create_app(backend, model_id: str, limits: Limits | None = None, api_key: str | None = None) -> FastAPI:
    srv = Server(backend, model_id, limits or Limits(), api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        srv.scheduler = Scheduler(backend, srv.limits.max_queue, srv.limits.max_batch)
        srv.scheduler.start()
        yield
        await srv.scheduler.stop()

    app = FastAPI(title="codehone serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = srv

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError):
        return _error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException):
        return _error_response(APIError(e.status_code, str(e.detail), code="not_found" if e.status_code == 404
                                        else None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError):
        return _error_response(APIError(400, str(e.errors()[0].get("msg", "invalid request"))))

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": srv.model_id, "backend": backend.name,
                "context_length": backend.context_length, **srv.scheduler.stats()}

    @app.get("/v1/models")
    async def models(request: Request):
        srv.authorize(request)
        return {"object": "list", "data": [{"id": srv.model_id, "object": "model", "created": srv.started,
                                            "owned_by": "codehone"}]}

    def parse(model, body: dict):
        try:
            return model.model_validate(body)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err.get("loc", ()))
            raise APIError(400, f"{where}: {err.get('msg')}" if where else str(err.get("msg")),
                           param=where or None) from None

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        srv.authorize(request)
        req: ChatRequest = parse(ChatRequest, await srv.read_json(request))
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": _text_of(m.content)}
                    for m in req.messages]
        try:
            prompt = render_chat(backend.tokenizer, messages)
        except ServeError as e:
            raise APIError(400, str(e), param="messages") from None
        params = srv.params(req, req.max_completion_tokens or req.max_tokens)
        return await _respond(srv, request, prompt, params, req, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        srv.authorize(request)
        req: CompletionRequest = parse(CompletionRequest, await srv.read_json(request))
        prompt = req.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise APIError(400, "prompt: exactly one prompt per request", param="prompt")
            prompt = prompt[0]
        return await _respond(srv, request, prompt, srv.params(req, req.max_tokens), req, chat=False)

    return app


async def _cancel_on_disconnect(request: Request, job: Job, every_s: float = 0.25) -> None:
    """A client that hangs up frees its row in the batch (a stream learns it from the failed write)."""
    while not job.cancelled:
        if await request.is_disconnected():
            job.cancelled = True
            return
        await asyncio.sleep(every_s)


async def _respond(srv: Server, request: Request, prompt: str, params: GenParams, req: _Common, chat: bool):
    stops = _stops(req.stop)
    job = srv.job(prompt, params)
    col = _Collector(job, stops, srv.limits.timeout_s)
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    obj = "chat.completion" if chat else "text_completion"
    usage = lambda: {"prompt_tokens": len(job.prompt), "completion_tokens": col.tokens,  # noqa: E731
                     "total_tokens": len(job.prompt) + col.tokens}
    if not req.stream:
        watch = asyncio.create_task(_cancel_on_disconnect(request, job))
        try:
            while await col.next() is not None:
                pass
        finally:
            watch.cancel()
            job.cancelled = True  # the client may be gone; nothing more is needed either way
        col.check()
        choice: dict[str, Any] = {"index": 0, "finish_reason": col.finish_reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": col.text}
        else:
            choice.update(text=col.text, logprobs=None)
        return {"id": rid, "object": obj, "created": created, "model": srv.model_id, "choices": [choice],
                "usage": usage()}

    def chunk(delta: str | None, finish: str | None, first: bool = False) -> str:
        c: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            d: dict[str, Any] = {"role": "assistant"} if first else {}
            if delta is not None:
                d["content"] = delta
            c["delta"] = d
        else:
            c.update(text=delta or "", logprobs=None)
        body = {"id": rid, "object": obj + ".chunk" if chat else obj, "created": created,
                "model": srv.model_id, "choices": [c]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        try:
            if chat:
                yield chunk("", None, first=True)
            while True:
                piece = await col.next()
                if piece is None:
                    break
                if piece:
                    yield chunk(piece, None)
            try:
                col.check()
                yield chunk(None if chat else "", col.finish_reason)
            except APIError as e:
                yield f"data: {json.dumps(e.body())}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            job.cancelled = True

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
