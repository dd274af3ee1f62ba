"""Shared fixtures: tiny generated audio (no files from outside the test) and one random Encodec per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def speechlike(seconds: float, rate: int, f0: float = 150.0, channels: int = 1) -> np.ndarray:
    """A voiced-sounding test signal: harmonics of f0 under a syllable-rate envelope, float32 in [-0.5, 0.5].
    Shape (T,) for mono, (T, channels) otherwise (each extra channel a quieter copy)."""
    t = np.arange(int(round(seconds * rate))) / rate
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8) if f0 * h < rate / 2)
    x = (0.25 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x] + [x * (0.8 ** c) for c in range(1, channels)], axis=1)


@pytest.fixture
def write_audio():
    """write_audio(path, seconds=1.0, rate=24000, channels=1, subtype=None, silent=False) -> path.
    The format follows the extension (wav/flac/mp3/ogg); subtype e.g. PCM_U8, FLOAT, PCM_24."""

    def write(path, seconds: float = 1.0, rate: int = 24000, channels: int = 1, subtype: str | None = None,
              silent: bool = False) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = speechlike(seconds, rate, channels=channels)
        sf.write(str(path), np.zeros_like(data) if silent else data, rate, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="session")
def random_codec():
    """Encodec 24 kHz with the seeded random weights (building it costs ~1 s: once per session)."""
    from valle.audio import Codec

    return Codec.from_weights("random")
