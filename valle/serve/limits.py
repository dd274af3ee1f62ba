"""The speech API's limits: one dataclass that checks itself (as valle.config.Sampling does); the command line's
flags are made from its fields, so each default is written once, here."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields

from valle.config import MAX_FRAMES
from valle.errors import UserError


class LimitError(UserError):
    """A limit out of range; the message names its flag (`--max-batch 0: ...`)."""

    def __init__(self, name: str, value, need: str):
        super().__init__(f"--{name.replace('_', '-')} {value}: {need}")


def _help(text: str) -> dict:
    return {"help": text}


_MAY_BE_ZERO = ("max_waiting", "retry_after")


@dataclass(frozen=True)
class Limits:
    """What one server allows (a value out of range is a LimitError naming its flag); valle serve's flags."""

    max_batch: int = field(default=16, metadata=_help("sentences generated together"))
    max_waiting: int = field(default=32, metadata=_help(
        "speech requests waiting for a row beyond --max-batch; more get 429 with Retry-After"))
    max_input_chars: int = field(default=4096, metadata=_help("characters of input per request (as OpenAI's)"))
    max_frames: int = field(default=1500, metadata=_help(
        "frames per sentence, 75 per second (1500 = 20 s); a request may ask for fewer"))
    max_body_mb: float = field(default=16.0, metadata=_help("request body size in MiB (a voice recording fits)"))
    request_timeout: float = field(default=300.0, metadata=_help(
        "seconds from a request's arrival to its last byte (then 504, or a streamed answer is cut)"))
    drain_timeout: float = field(default=60.0, metadata=_help(
        "after SIGTERM, seconds to let requests in flight finish"))
    retry_after: int = field(default=2, metadata=_help("seconds a 429 asks the client to wait"))

    def __post_init__(self):
        # Written so that NaN fails every test (NaN compares False with everything).
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
                raise LimitError(f.name, value, "need a whole number")
            if not ((value > 0 or (value == 0 and f.name in _MAY_BE_ZERO)) and value < math.inf):
                raise LimitError(f.name, value, "must be 0 or more" if f.name in _MAY_BE_ZERO else
                                 "must be positive and finite")
        if self.max_frames > MAX_FRAMES:
            raise LimitError("max_frames", self.max_frames, f"at most {MAX_FRAMES} ({MAX_FRAMES // 75} s)")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)
