"""Failure detectors that need no model: did the AR stop, is the output too short or too long, silent, or noise?

Each synthesized utterance gets a few numbers (duration ratio, silence ratio, spectral flatness, level
modulation) and flags. The thresholds below were checked on espeak-ng speech of 8 voices (4 sentences each,
"Yes." included), white/pink noise at 3 levels, silence and the output of a random-weight Encodec
(tests/test_eval_detectors.py keeps that check):

| feature | espeak-ng speech | white / pink noise | random Encodec | threshold |
|---|---|---|---|---|
| spectral flatness (median of sounding frames) | 0.000-0.007 (0.15 with white noise at 10 dB SNR) | 0.56 / 0.30 | 0.001 | noise above 0.25 |
| level modulation (std of the frame level, dB) | 12.9-20.9 (6.0 at 10 dB SNR) | 0.4 / 1.5 | 0.01 | noise below 3 |

Known blind spot: babble that varies like speech (garbage codes through the real Encodec) passes these two;
the model-based metrics (WER, SIM) catch it.
"""  # noqa: E501

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torchaudio

FLAGS = ("runaway", "too_short", "silent", "noise")


@dataclass(frozen=True)
class Thresholds:
    """When an utterance is flagged. Every value is documented in docs/evaluation.md, "Flags"."""

    min_seconds: float = 0.3  # too_short: shorter than this, whatever the text
    min_duration_ratio: float = 0.4  # too_short: shorter than 0.4 x the expected duration
    max_duration_ratio: float = 2.5  # runaway: longer than 2.5 x the expected duration (or the AR hit its limit)
    silence_db: float = -50.0  # a 25 ms frame below this level (dBFS) is silent
    max_silence_ratio: float = 0.75  # silent: more than 75 % of the frames are silent
    min_level_db: float = -45.0  # silent: the whole output is quieter than this (dBFS)
    max_flatness: float = 0.25  # noise: the sounding frames' spectrum is this flat (white 0.56, pink 0.30)
    min_modulation_db: float = 3.0  # noise: the level hardly moves (hum, hiss, a codec ignoring its input)


@dataclass
class Detection:
    """The detectors' numbers and flags for one waveform."""

    seconds: float
    level_db: float
    silence_ratio: float
    flatness: float  # NaN when nothing sounds
    modulation_db: float
    duration_ratio: float  # to the expected duration; NaN when none is known
    stopped_at_eos: bool | None  # None: not generated (a real recording)
    flags: list[str] = field(default_factory=list)


_FRAME_S, _HOP_S = 0.025, 0.010
_N_FFT = 1024


def _frames(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T,) -> (N, frame) 25 ms frames every 10 ms (at least one, zero-padded)."""
    n, hop = int(_FRAME_S * sample_rate), int(_HOP_S * sample_rate)
    if len(wave) < n:
        wave = np.pad(wave, (0, n - len(wave)))
    starts = hop * np.arange(1 + (len(wave) - n) // hop)
    return wave[starts[:, None] + np.arange(n)[None]]  # (N, n)


def _db(power: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(power, 1e-20))


def spectral_flatness(frames: np.ndarray, sample_rate: int) -> np.ndarray:
    """(N, n) frames -> (N,) geometric / arithmetic mean of the power spectrum between 70 Hz and 8 kHz."""
    n_fft = 1 << (frames.shape[1] - 1).bit_length()
    power = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), n_fft)) ** 2 + 1e-12  # (N, n_fft/2+1)
    lo, hi = int(70 * n_fft / sample_rate), int(min(8000, sample_rate / 2) * n_fft / sample_rate)
    power = power[:, max(lo, 1):hi]
    return np.exp(np.log(power).mean(1)) / power.mean(1)


@functools.lru_cache(maxsize=4)
def _mel(sample_rate: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=_N_FFT, win_length=int(_FRAME_S * sample_rate),
                                                hop_length=int(_HOP_S * sample_rate), n_mels=40,
                                                f_max=min(8000.0, sample_rate / 2))


def level_modulation(wave: np.ndarray, sample_rate: int) -> float:
    """Std (dB) of the 40-band mel energy per 10 ms frame, floored 50 dB below the loud frames: speech is
    bursty (syllables and pauses), a stationary signal is not."""
    if len(wave) < _N_FFT:  # the STFT's reflect padding needs n_fft samples: analyse a short output as a loop
        wave = np.resize(wave, _N_FFT)
    energy = _mel(sample_rate)(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))).sum(0).numpy()  # (N,)
    level = _db(energy)
    return float(np.maximum(level, np.percentile(level, 95) - 50).std())


def detect(wave, sample_rate: int, expected_seconds: float | None = None, stopped_at_eos: bool | None = None,
           thresholds: Thresholds = Thresholds()) -> Detection:
    """Measure a waveform (T,) and flag it.

    expected_seconds: the duration it should have (the ground truth's, or the speaker's rate x the text);
    stopped_at_eos: False when the AR ran into its frame limit (None for real recordings).
    """
    t = thresholds
    wave = np.asarray(wave.numpy() if torch.is_tensor(wave) else wave, dtype=np.float64).reshape(-1)
    seconds = len(wave) / sample_rate
    frames = _frames(wave, sample_rate)
    frame_db = _db((frames ** 2).mean(1))  # (N,)
    sounding = frame_db > t.silence_db
    level = float(_db(np.array((wave ** 2).mean() if len(wave) else 0.0)))
    flatness = float(np.median(spectral_flatness(frames[sounding], sample_rate))) if sounding.any() else math.nan
    modulation = level_modulation(wave, sample_rate) if len(wave) else 0.0
    ratio = seconds / expected_seconds if expected_seconds else math.nan
    d = Detection(seconds, level, float(1 - sounding.mean()) if len(wave) else 1.0, flatness, modulation, ratio,
                  stopped_at_eos)
    if stopped_at_eos is False or ratio > t.max_duration_ratio:
        d.flags.append("runaway")
    if seconds < t.min_seconds or ratio < t.min_duration_ratio:
        d.flags.append("too_short")
    silent = level < t.min_level_db or d.silence_ratio > t.max_silence_ratio
    if silent:
        d.flags.append("silent")
    elif flatness > t.max_flatness or modulation < t.min_modulation_db:
        d.flags.append("noise")
    return d
