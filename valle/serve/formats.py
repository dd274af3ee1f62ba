"""The audio formats of the speech API (OpenAI's response_format), all mono 24 kHz, through soundfile.

pcm is raw 16-bit signed little-endian samples, as OpenAI sends it. Only wav and pcm stream: a streamed answer is
one header (wav: a header whose sizes say "unknown length", as streaming WAV servers write it) and then each
sentence's samples, so the bytes as they arrive, concatenated, are the whole answer's file. An mp3, flac or opus
file written by soundfile has one header (and, for mp3, the encoder's delay and length tag) for the whole answer:
files made sentence by sentence would not decode as one, so those formats are only sent whole.
"""

from __future__ import annotations

import io
import struct

import soundfile as sf
import torch

from valle.audio import SAMPLE_RATE

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg",
               "pcm": "audio/pcm"}
STREAMABLE = ("wav", "pcm")
_SOUNDFILE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
              "opus": ("OGG", "OPUS")}


def pcm16(wave: torch.Tensor) -> bytes:
    """wave (T,) float in [-1, 1] -> 16-bit little-endian samples (converted as soundfile does for wav)."""
    buf = io.BytesIO()
    sf.write(buf, wave.detach().cpu().float().numpy(), SAMPLE_RATE, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buf.getvalue()


def encode(wave: torch.Tensor, fmt: str) -> bytes:
    """A whole response body: wave (T,) at 24 kHz in `fmt`."""
    if fmt == "pcm":
        return pcm16(wave)
    buf = io.BytesIO()
    container, subtype = _SOUNDFILE[fmt]
    sf.write(buf, wave.detach().cpu().float().numpy(), SAMPLE_RATE, format=container, subtype=subtype)
    return buf.getvalue()


def stream_header(fmt: str) -> bytes:
    """What a streamed response starts with: for wav, a 16-bit mono header with unknown (maximal) sizes."""
    if fmt != "wav":
        return b""
    rate, bits = SAMPLE_RATE, 16
    fmt_chunk = struct.pack("<HHIIHH", 1, 1, rate, rate * bits // 8, bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk
            + b"data" + struct.pack("<I", 0xFFFFFFFF))
