"""What the speech API does, apart from HTTP: check a speech request, cut it into sentences, run its pieces on the
engine and hand back their audio; count the requests in flight (429, draining)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import torch

from valle.config import Sampling, SamplingError
from valle.errors import UserError
from valle.inference import MAX_TEXT_TOKENS, Request, split_text
from valle.serve.engine import Engine, Job
from valle.serve.limits import Limits
from valle.serve.metrics import Metrics
from valle.serve.voices import Voice, VoiceBank
from valle.text import INPUT_LANGUAGES

MIN_TEMPERATURE = 0.01  # scores divided by less can overflow float32 (NaN probabilities)


class ApiError(Exception):
    """An answer other than audio: HTTP status, message, and OpenAI's error `type`, `param` and `code`."""

    TYPES = {401: "authentication_error", 429: "rate_limit_error", 503: "server_error", 504: "server_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return self.TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")


@dataclass
class Speech:
    """A checked speech request: its pieces (one per sentence when streamed), in one voice; piece i samples
    with sampling.for_batch(i) (seed + i)."""

    pieces: list[Request]
    voice: Voice
    sampling: Sampling


@dataclass
class Service:
    model: object
    tokenizer: object
    bank: VoiceBank
    engine: Engine
    metrics: Metrics
    limits: Limits = field(default_factory=Limits)
    draining: bool = False
    active: int = 0  # speech requests admitted and not yet answered

    def check(self, body) -> Speech:
        """A SpeechRequest (valle.serve.app) -> Speech, or an ApiError/UserError naming what is wrong."""
        if body.speed != 1.0:
            raise ApiError(400, f"speed {body.speed}: only 1.0 is supported (VALL-E X has no speed control, and "
                                "resampling would change the voice's pitch)", param="speed")
        if body.instructions:
            raise ApiError(400, "instructions: not supported by this model; leave it out", param="instructions")
        if len(body.input) > self.limits.max_input_chars:
            raise ApiError(400, f"input has {len(body.input)} characters; at most {self.limits.max_input_chars} "
                                "per request: send it in several requests", param="input")
        if not body.input.strip():
            raise ApiError(400, "input is empty; give the text to speak", param="input")
        voice = self.bank.get(body.voice)
        language = body.language or voice.language
        if language not in INPUT_LANGUAGES:
            raise ApiError(400, f"language {language!r}: use one of {', '.join(INPUT_LANGUAGES)}", param="language")
        if body.max_frames is not None and not 1 <= body.max_frames <= self.limits.max_frames:
            raise ApiError(400, f"max_frames {body.max_frames}: must be between 1 and {self.limits.max_frames}",
                           param="max_frames")
        d = voice.sampling
        seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
        try:
            sampling = Sampling(d.top_k if body.top_k is None else body.top_k,
                                d.top_p if body.top_p is None else body.top_p,
                                d.temperature if body.temperature is None else body.temperature,
                                seed=seed, max_frames=body.max_frames)
        except SamplingError as e:
            raise ApiError(400, e.api_message, param=e.field) from None
        if sampling.temperature < MIN_TEMPERATURE and sampling.top_k != 1:
            raise ApiError(400, f"temperature {sampling.temperature}: at least {MIN_TEMPERATURE} (lower overflows "
                                "the scores; top_k 1 is greedy)", param="temperature")
        tokenizer = _Memo(self.tokenizer)  # split_text tokenizes each sentence once; not again here
        texts = split_text(body.input.strip(), language, tokenizer, MAX_TEXT_TOKENS, pack=False)
        pieces = []
        for text in texts:
            tok = tokenizer.encode(text, language)
            if not tok.ids:
                raise ApiError(400, f"{text[:40]!r}: nothing to speak in it (no text tokens)", param="input")
            pieces.append(Request(list(tok.ids), list(tok.languages), voice.prompt))
        return Speech(pieces, voice, sampling)

    def admit(self) -> None:
        """Count one more speech request in, or answer 429 (the queue is full) or 503 (draining)."""
        if self.draining:
            raise ApiError(503, "the server is shutting down; retry on another instance or later")
        if self.active >= self.limits.max_batch + self.limits.max_waiting:
            raise ApiError(429, f"{self.active} requests are in progress, the most this server queues; retry in "
                                f"{self.limits.retry_after} s", headers={"Retry-After": str(self.limits.retry_after)})
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    def job(self, speech: Speech, index: int, queue: asyncio.Queue) -> Job:
        """The engine job of piece `index`; its result goes to `queue` as (index, result)."""
        loop = asyncio.get_running_loop()

        def done(result) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (index, result))

        return Job(speech.pieces[index], speech.voice.adapters, speech.sampling.for_batch(index), done)

    async def render(self, speech: Speech, deadline: float, one_by_one: bool) -> AsyncIterator[torch.Tensor]:
        """The wave (T * 320,) of each piece, in order. one_by_one: a piece starts when the one before it is done
        (its first audio as soon as a piece alone gives it); otherwise all pieces are generated together.
        A request that ends early (client gone, timeout) takes its pieces out of the batch."""
        queue: asyncio.Queue = asyncio.Queue()
        jobs = [self.job(speech, i, queue) for i in range(len(speech.pieces))]
        for job in jobs[: 1 if one_by_one else len(jobs)]:
            self.engine.submit(job)
        results: dict[int, object] = {}
        try:
            for i in range(len(jobs)):
                while i not in results:
                    left = deadline - time.monotonic()
                    try:
                        index, result = await asyncio.wait_for(queue.get(), timeout=max(left, 0.001))
                    except asyncio.TimeoutError:
                        raise ApiError(504, f"the request took longer than the {self.limits.request_timeout:g} s "
                                            "allowed; send shorter text") from None
                    results[index] = result
                result = results.pop(i)
                if isinstance(result, BaseException):
                    raise result
                if one_by_one and i + 1 < len(jobs):
                    self.engine.submit(jobs[i + 1])
                yield result[1]
        finally:
            for job in jobs:
                self.engine.cancel(job)  # no effect on a job that is done


class _Memo:
    """A tokenizer that remembers what it tokenized (for one request)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.seen = tokenizer, {}

    def encode(self, text: str, language: str):
        key = (text, language)
        if key not in self.seen:
            self.seen[key] = self.tokenizer.encode(text, language)
        return self.seen[key]


def check_error(e: BaseException) -> ApiError:
    """Any exception as the ApiError the client sees (UserError: 4xx with its message; others: 500, no details)."""
    from valle.serve.voices import BadVoiceName, UnknownVoice

    if isinstance(e, ApiError):
        return e
    if isinstance(e, BadVoiceName):
        return ApiError(400, str(e), param="voice", code="invalid_voice_name")
    if isinstance(e, UnknownVoice):
        return ApiError(404, str(e), param="voice", code="voice_not_found")
    if isinstance(e, UserError):
        return ApiError(400, str(e))
    return ApiError(500, "internal error while generating (details are in the server's log)")
