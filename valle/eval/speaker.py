"""Speaker similarity (SIM): cosine between speaker embeddings of two recordings.

`SpeakerEncoder` is the interface; `resemblyzer` (a 3-layer LSTM d-vector model whose pretrained weights ship
inside its PyPI package, so it works offline) is the default backend. A WavLM or ECAPA model fits the same
interface: implement `embed` and register it in `BACKENDS`.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod

import numpy as np
import torch
import torchaudio

from valle.errors import UserError

MIN_SECONDS = 0.3  # shorter (after silence trimming) gives no embedding: SIM is NaN
_PARTIALS = (1.3, 0.75)  # resemblyzer's embed_utterance: windows per second, least coverage of the last window


class SpeakerEncoder(ABC):
    name: str

    @abstractmethod
    def embed(self, wave: torch.Tensor, sample_rate: int) -> np.ndarray | None:
        """A waveform (T,) -> an L2-normalised embedding (D,), or None when there is no voice to embed."""

    def embed_many(self, waves: list[torch.Tensor], sample_rate: int) -> list[np.ndarray | None]:
        """`embed` of each waveform; a backend that can batch them overrides this."""
        return [self.embed(w, sample_rate) for w in waves]

    def similarity(self, a: np.ndarray | None, b: np.ndarray | None) -> float:
        """Cosine of two embeddings; NaN when either is missing."""
        if a is None or b is None:
            return math.nan
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class ResemblyzerEncoder(SpeakerEncoder):
    """resemblyzer's VoiceEncoder: 16 kHz, volume normalised, long silences trimmed (webrtcvad), 256 dims."""

    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # its scipy.ndimage.morphology import
                import resemblyzer
        except ImportError as e:
            raise UserError(f"speaker similarity needs resemblyzer ({e}): pip install 'valle-toolkit[eval]'") from None
        self._resemblyzer = resemblyzer
        self.model = resemblyzer.VoiceEncoder(device, verbose=False)
        self.rate = resemblyzer.sampling_rate

    def embed(self, wave: torch.Tensor, sample_rate: int) -> np.ndarray | None:
        return self.embed_many([wave], sample_rate)[0]

    def embed_many(self, waves: list[torch.Tensor], sample_rate: int) -> list[np.ndarray | None]:
        """resemblyzer's `embed_utterance` of each waveform (the mean of its 1.6 s windows' embeddings, L2
        normalised), the windows of all of them in one batch through the LSTM: the same embeddings, about 5x
        faster than one utterance at a time on a CPU."""
        windows = [self._windows(w, sample_rate) for w in waves]  # each (N_i, 160, 40) log-mel, or None
        stacked = [w for w in windows if w is not None]
        if not stacked:
            return [None] * len(waves)
        with torch.inference_mode():
            partial = self.model(torch.from_numpy(np.concatenate(stacked)).to(self.model.device)).cpu().numpy()
        out, start = [], 0  # partial: (sum N_i, 256), each row of norm 1
        for w in windows:
            if w is None:
                out.append(None)
                continue
            mean = partial[start:start + len(w)].mean(axis=0)
            out.append(mean / np.linalg.norm(mean))
            start += len(w)
        return out

    def _windows(self, wave: torch.Tensor, sample_rate: int) -> np.ndarray | None:
        """The log-mel windows `embed_utterance` would embed (N, 160, 40), or None when there is no voice."""
        wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        if wave.numel() < MIN_SECONDS * sample_rate or wave.abs().max() < 1e-4:
            return None  # resemblyzer's volume normalisation divides by the level: silence would give NaN
        wave = torchaudio.functional.resample(wave, sample_rate, self.rate).numpy()  # (T',) at 16 kHz
        wave = self._resemblyzer.preprocess_wav(wave)  # normalise the volume, trim long silences
        if len(wave) < MIN_SECONDS * self.rate:
            return None
        wave_slices, mel_slices = self.model.compute_partial_slices(len(wave), *_PARTIALS)
        wave = np.pad(wave, (0, max(0, wave_slices[-1].stop - len(wave))))
        mel = self._resemblyzer.wav_to_mel_spectrogram(wave)  # (frames, 40)
        return np.stack([mel[s] for s in mel_slices])


BACKENDS = {"resemblyzer": ResemblyzerEncoder}


def get_speaker_encoder(name: str = "resemblyzer", device: str = "cpu") -> SpeakerEncoder:
    if name not in BACKENDS:
        raise UserError(f"--speaker-model {name!r}: unknown; use one of {', '.join(BACKENDS)}")
    return BACKENDS[name](device=device)
