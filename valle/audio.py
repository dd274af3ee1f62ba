"""Audio files in: any wav/flac/mp3/ogg -> mono float waveform at 24 kHz, and what it was converted from.

The 24 kHz Encodec model is mono: stereo input must be downmixed before encoding (the public VALL-E
attempts broke on this). `load_audio` always returns mono 24 kHz and says what it converted. The codec itself
(waveform <-> codes) is in codec.py; the Vocos decoder, an optional alternative to Encodec's own, in vocoder.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from valle.errors import UserError

SAMPLE_RATE = 24000  # Hz, the Encodec 24 kHz model's rate: every waveform of the toolkit is at this rate
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")

# A WAV header with one of these data sizes was written by a streaming writer that did not know the size.
_UNKNOWN_WAV_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}

_SUBTYPE_NAMES = {"PCM_U8": "8-bit PCM", "PCM_S8": "8-bit PCM", "PCM_16": "16-bit PCM", "PCM_24": "24-bit PCM",
                  "PCM_32": "32-bit PCM", "FLOAT": "32-bit float", "DOUBLE": "64-bit float",
                  "MPEG_LAYER_III": "MP3", "VORBIS": "Vorbis", "OPUS": "Opus"}


class AudioError(UserError):
    """A file that cannot be used as audio. `kind` is a short category for reports (e.g. "truncated")."""

    def __init__(self, path, kind: str, detail: str):
        super().__init__(f"{path}: {kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class AudioInfo:
    """What a file was before `load_audio` made it mono 24 kHz float."""

    path: str
    sample_rate: int
    channels: int
    num_samples: int  # per channel, at the original rate
    format: str  # soundfile's container name: WAV, FLAC, MP3, OGG
    subtype: str  # soundfile's sample type: PCM_16, PCM_U8, FLOAT, MPEG_LAYER_III, ...

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    def conversions(self) -> list[str]:
        """What `load_audio` changed, e.g. ["downmixed", "resampled"]; empty when the file was mono 24 kHz."""
        done = []
        if self.channels > 1:
            done.append("downmixed")
        if self.sample_rate != SAMPLE_RATE:
            done.append("resampled")
        return done

    def describe(self) -> str:
        """What the file was and what was done: '2 channels at 44100 Hz (16-bit PCM WAV) -> downmixed and resampled'."""
        chans = "1 channel" if self.channels == 1 else f"{self.channels} channels"
        what = " and ".join(self.conversions()) or "decoded"
        return f"{chans} at {self.sample_rate} Hz ({self.kind}) -> {what}"

    @property
    def kind(self) -> str:
        """Sample type and container in words: '8-bit PCM WAV', '32-bit float WAV', 'MP3', 'Vorbis OGG'."""
        sample = _SUBTYPE_NAMES.get(self.subtype, self.subtype)
        return sample if sample == self.format else f"{sample} {self.format}"


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header only (cheap): rate, channels, length, format. Raises AudioError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "missing file", "no such file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file", "0 bytes")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, "unreadable", f"{e} (truncated, corrupted or not audio)") from None
    _check_wav_header(path, info)
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)


def _check_wav_header(path: Path, info) -> None:
    """libsndfile reads a cut-off WAV without an error; its log says 'data : N (should be M)'."""
    for line in info.extra_info.splitlines():
        if line.startswith("data") and "should be" in line:
            declared = int(line.split(":")[1].split("(")[0])
            actual = int(line.split("should be")[1].strip(" )"))
            if declared > actual and declared not in _UNKNOWN_WAV_SIZES:
                raise AudioError(path, "truncated", f"header declares {declared} data bytes, file has {actual}")


def load_audio(path: str | Path) -> tuple[torch.Tensor, AudioInfo]:
    """Read any wav/flac/mp3/ogg (8/16/24/32-bit int or float, any rate, any channel count).

    Returns the waveform downmixed to mono and resampled to 24 kHz, float32 in [-1, 1], shape (T,),
    and the AudioInfo of the original file. Raises AudioError for empty, truncated or corrupted files.
    """
    info = audio_info(path)
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, "unreadable", f"{e} (truncated or corrupted)") from None
    if data.shape[0] == 0:
        raise AudioError(path, "no samples", "the file holds no audio samples (truncated or empty)")
    if info.num_samples > 0 and data.shape[0] < 0.98 * info.num_samples:
        raise AudioError(path, "truncated", f"header declares {info.num_samples} samples, only {data.shape[0]} decode")
    if not np.isfinite(data).all():
        raise AudioError(path, "corrupted", "NaN or infinite samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # (T,)
    if info.sample_rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, info.sample_rate, SAMPLE_RATE)  # (T * 24000 / sr,)
    return wave.float(), info


def level_dbfs(wave: torch.Tensor) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence)."""
    rms = wave.double().pow(2).mean().sqrt().item() if wave.numel() else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf
