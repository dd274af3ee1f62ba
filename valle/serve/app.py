"""The HTTP face of the speech API (FastAPI): OpenAI's `POST /v1/audio/speech` and error objects, voices, health
and metrics. Every answer that is not audio is JSON `{"error": {"message", "type", "param", "code"}}`; no
traceback ever leaves the server (it goes to the log). A body the server cannot take is a 4xx whatever the parser
raises; a 5xx only ever means the server itself failed. A streamed answer that cannot be finished (timeout, failure)
is cut: the connection closes without the chunked encoding's last chunk, so no client takes it for a whole one."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Literal

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from valle.config import Sampling, SamplingError
from valle.errors import UserError
from valle.serve.formats import MEDIA_TYPES, STREAMABLE, encode, pcm16, stream_header
from valle.serve.limits import Limits
from valle.serve.service import ApiError, Service, check_error

log = logging.getLogger("valle.serve")
OPEN_PATHS = ("/health",)  # answered without the API key (load balancers)


class SpeechRequest(BaseModel):
    """OpenAI's request, and this server's extensions (stream, language, seed, sampling, max_frames)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)  # JSON types as written
    model: str = Field(min_length=1)
    input: str
    voice: str
    response_format: Literal["wav", "flac", "mp3", "opus", "pcm"] = "mp3"
    speed: float = 1.0
    instructions: str | None = None
    stream_format: Literal["audio"] = "audio"
    stream: bool = False
    language: str | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**62)
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    max_frames: int | None = None


def error_response(e: ApiError) -> JSONResponse:
    body = {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}}
    return JSONResponse(body, status_code=e.status, headers=e.headers)


def parse(model: type[BaseModel], content_type: str | None, raw: bytes) -> BaseModel:
    """A JSON body sent as application/json -> `model`, or an ApiError 4xx whatever is wrong with it."""
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, f"send the body as JSON with the header Content-Type: application/json (this one came as "
                            f"{content_type or 'no content type'})", code="unsupported_media_type")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, a number too long to convert, nesting too deep
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ApiError(400, f"the body is not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body is JSON {type(data).__name__}; send a JSON object (model, input, voice, ...)")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None


class BodyTooLarge(Exception):
    pass


class StreamCut(Exception):
    """A streamed answer that cannot be finished; the Guard ends its connection without the last chunk."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def too_large(limits: Limits) -> ApiError:
    return ApiError(413, f"the body is larger than the {limits.max_body_bytes} bytes allowed (--max-body-mb)")


class Guard:
    """ASGI middleware: the API key, the body size limit, requests counted in the metrics."""

    def __init__(self, app, service: Service, api_key: str | None):
        self.app, self.service, self.api_key = app, service, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, status = scope["path"], [500]

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            error = self._refuse(scope)
            if error is not None:
                return await error_response(error)(scope, receive, counted_send)
            await self.app(scope, self._limited(receive), counted_send)
        except StreamCut as e:  # returning with the response unfinished makes the server close the connection
            status[0] = e.status
        finally:
            self.service.metrics.count_request(path if path.startswith(("/v1/", "/health", "/metrics")) else "other",
                                               status[0])

    def _refuse(self, scope) -> ApiError | None:
        headers = dict(scope["headers"])
        if self.api_key and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                return ApiError(401, "missing or wrong API key: send the header Authorization: Bearer <key>",
                                code="invalid_api_key")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.service.limits.max_body_bytes):
            return too_large(self.service.limits)
        return None

    def _limited(self, receive):
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.service.limits.max_body_bytes:
                raise BodyTooLarge()
            return message

        return limited


def create_app(service: Service, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="VALL-E X speech API", docs_url=None, redoc_url=None, openapi_url=None)
    m = service.metrics
    m.gauges["valle_queue_length"] = lambda: service.engine.queued
    m.gauges["valle_running_rows"] = lambda: service.engine.running
    m.gauges["valle_active_requests"] = lambda: service.active

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error_response(e)

    @app.exception_handler(UserError)
    async def user_error(request, e: UserError):
        return error_response(check_error(e))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request, e):
        return error_response(too_large(service.limits))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        return error_response(ApiError(e.status_code, f"{request.method} {request.url.path}: {e.detail}"))

    @app.exception_handler(Exception)
    async def internal(request, e: Exception):
        error = check_error(e)
        if error.status >= 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return error_response(error)

    @app.get("/health")
    async def health():
        status = "draining" if service.draining else "ok"
        return JSONResponse({"status": status, "voices": len(service.bank.voices), "active": service.active,
                             "queued": service.engine.queued, "running": service.engine.running},
                            status_code=503 if service.draining else 200)

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(m.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/voices")
    async def list_voices():
        voices = [service.bank.voices[n].describe() for n in sorted(service.bank.voices)]
        return {"object": "list", "data": voices}

    @app.post("/v1/voices")
    async def add_voice(request: Request):
        return await _add_voice(service, request)

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        return await _speech(service, request)

    app.add_middleware(Guard, service=service, api_key=api_key)
    return app


async def _speech(service: Service, request: Request) -> Response:
    start = time.monotonic()
    body = parse(SpeechRequest, request.headers.get("content-type"), await request.body())
    speech = service.check(body)
    if body.stream and body.response_format not in STREAMABLE:
        raise ApiError(400, f"response_format {body.response_format} cannot be streamed (its file has one header for "
                            f"the whole answer); stream {' or '.join(STREAMABLE)}, or ask without stream",
                       param="response_format")
    service.admit()
    deadline = start + service.limits.request_timeout
    headers = {"X-Seed": str(speech.sampling.seed), "X-Pieces": str(len(speech.pieces))}
    pieces = _watching(request, service.render(speech, deadline, one_by_one=body.stream))
    if not body.stream:
        try:
            waves = [wave async for wave in pieces]
        finally:
            service.release()
        data = await asyncio.to_thread(encode, torch.cat(waves), body.response_format)
        service.metrics.observe(service.metrics.latency, time.monotonic() - start)
        return Response(data, media_type=MEDIA_TYPES[body.response_format], headers=headers)

    async def chunks():
        sent = 0
        try:
            yield stream_header(body.response_format)
            async for wave in pieces:
                if not sent:
                    service.metrics.observe(service.metrics.first_audio, time.monotonic() - start)
                yield pcm16(wave)
                sent += 1
            service.metrics.observe(service.metrics.latency, time.monotonic() - start)
        except Exception as e:  # the status is sent already: cut the stream, so that it does not look whole
            error = check_error(e)
            log.warning("stream cut after %d of %d sentences: %s", sent, len(speech.pieces), error.message)
            raise StreamCut(error.status) from None

    return ReleasingStream(chunks(), service.release, media_type=MEDIA_TYPES[body.response_format], headers=headers)


class ReleasingStream(StreamingResponse):
    """A streamed answer that gives its request's place back however it ends, also when the client left before the
    first byte: the body then never starts, so a `finally` in it would never run and the place would stay taken."""

    def __init__(self, content, release, **kwargs):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _watching(request: Request, pieces):
    """The pieces as they come, given up (499) as soon as the client disconnects while one is made: the request's
    jobs are cancelled then (Service.render), not when the next piece would have been sent."""
    try:
        while True:
            step = asyncio.ensure_future(anext(pieces))
            try:
                while not step.done():
                    await asyncio.wait({step}, timeout=0.25)
                    if not step.done() and await request.is_disconnected():
                        raise ApiError(499, "the client disconnected")
            finally:
                if not step.done():
                    step.cancel()
                    await asyncio.wait({step})
            try:
                wave = step.result()
            except StopAsyncIteration:
                return
            yield wave
    finally:
        await pieces.aclose()


async def _add_voice(service: Service, request: Request) -> JSONResponse:
    """multipart/form-data: name, transcript, language (default en), file (a recording up to 15 s); optional
    top_k, top_p, temperature (the voice's sampling defaults)."""
    try:
        form = await request.form()
    except (AssertionError, ValueError) as e:  # not multipart, or a broken one
        raise ApiError(400, f"send multipart/form-data with name, transcript, language and file ({e})") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(400, "file: the recording is missing (a wav/flac/mp3/ogg file field)", param="file")
    fields = {k: form.get(k) for k in ("top_k", "top_p", "temperature") if form.get(k) is not None}
    try:
        sampling = Sampling(int(fields.get("top_k", 0)), float(fields.get("top_p", 1.0)),
                            float(fields.get("temperature", 1.0)))
    except ValueError as e:
        raise ApiError(400, f"sampling fields: {e}") from None
    except SamplingError as e:
        raise ApiError(400, e.api_message, param=e.field) from None
    data = await upload.read()
    name, transcript = str(form.get("name", "")), str(form.get("transcript", ""))
    language = str(form.get("language", "en"))

    def create():
        from valle.audio import load_audio

        suffix = Path(upload.filename or "x.wav").suffix.lower() or ".wav"
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:
            f.write(data)
            f.flush()
            wave, _ = load_audio(f.name)
        return service.bank.create(name, wave, transcript, language, sampling)

    voice = await asyncio.wrap_future(service.engine.call(create))
    return JSONResponse(voice.describe(), status_code=201)

