"""The HTTP face of the speech API (FastAPI): OpenAI's `POST /v1/audio/speech` and error objects, voices, health
and metrics. Every answer that is not audio is JSON `{"error": {"message", "type", "param", "code"}}`; no
traceback ever leaves the server (it goes to the log)."""

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
from valle.serve.formats import MEDIA_TYPES, STREAMABLE, encode, stream_chunk, stream_header
from valle.serve.service import ApiError, Service, check_error

log = logging.getLogger("valle.serve")
OPEN_PATHS = ("/health",)  # answered without the API key (load balancers)


class SpeechRequest(BaseModel):
    """OpenAI's request, and this server's extensions (stream, language, seed, sampling, max_frames)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
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


def parse(model: type[BaseModel], raw: bytes) -> BaseModel:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON ({e})") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None


class BodyTooLarge(Exception):
    pass


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
            return self._too_large()
        return None

    def _too_large(self) -> ApiError:
        return ApiError(413, f"the body is larger than the {self.service.limits.max_body_bytes} bytes allowed")

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
    async def too_large(request, e):
        return error_response(ApiError(413, f"the body is larger than the {service.limits.max_body_bytes} "
                                            "bytes allowed"))

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
    body = parse(SpeechRequest, await request.body())
    speech = service.check(body)
    if body.stream and body.response_format not in STREAMABLE:
        raise ApiError(400, f"response_format {body.response_format} cannot be streamed; stream wav, pcm or mp3",
                       param="response_format")
    service.admit()
    deadline = start + service.limits.request_timeout
    headers = {"X-Seed": str(speech.sampling.seed), "X-Pieces": str(len(speech.pieces))}
    if not body.stream:
        try:
            waves = []
            async for wave in _watching(request, service.render(speech, deadline, one_by_one=False)):
                waves.append(wave)
        finally:
            service.release()
        data = encode(torch.cat(waves), body.response_format)
        service.metrics.observe(service.metrics.latency, time.monotonic() - start)
        service.metrics.observe(service.metrics.first_audio, time.monotonic() - start)
        return Response(data, media_type=MEDIA_TYPES[body.response_format], headers=headers)

    async def chunks():
        try:
            yield stream_header(body.response_format)
            first = True
            async for wave in service.render(speech, deadline, one_by_one=True):
                if first:
                    service.metrics.observe(service.metrics.first_audio, time.monotonic() - start)
                    first = False
                yield stream_chunk(wave, body.response_format)
            service.metrics.observe(service.metrics.latency, time.monotonic() - start)
        except Exception as e:  # the status is sent already: end the stream, log why
            log.warning("stream ended early: %s", check_error(e).message)
        finally:
            service.release()

    return StreamingResponse(chunks(), media_type=MEDIA_TYPES[body.response_format], headers=headers)


async def _watching(request: Request, pieces):
    """The pieces of a non-streamed request, given up when the client disconnects while they are made."""
    task = asyncio.ensure_future(_collect(pieces))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                raise ApiError(499, "the client disconnected")
        for wave in task.result():
            yield wave
    finally:
        if not task.done():
            task.cancel()


async def _collect(pieces) -> list:
    out = []
    try:
        async for wave in pieces:
            out.append(wave)
    finally:
        await pieces.aclose()
    return out


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

