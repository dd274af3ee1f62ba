"""Distance to the ground truth: mel-cepstral distortion with DTW alignment (MCD), and STOI / PESQ when the
packages `pystoi` / `pesq` are installed (optional extra `eval`), computed on the DTW-aligned synthesis.

MCD here is computed on mel cepstra of a log mel spectrogram (24 kHz, 80 bands, 13 coefficients, c0 left out):
MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2), averaged over the DTW path. Its absolute values are not those
of SPTK mcep-based MCD in papers; compare checkpoints with each other and with the ground-truth row.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torchaudio

HOP_S = 0.010
N_CEPSTRA = 13
N_MELS = 80
_MCD_SCALE = 10 / math.log(10) * math.sqrt(2)


@functools.lru_cache(maxsize=4)
def _mfcc(sample_rate: int) -> torchaudio.transforms.MFCC:
    return torchaudio.transforms.MFCC(sample_rate, n_mfcc=N_CEPSTRA, log_mels=True,
                                      melkwargs={"n_fft": 1024, "win_length": int(0.025 * sample_rate),
                                                 "hop_length": int(HOP_S * sample_rate), "n_mels": N_MELS})


def mel_cepstra(wave: torch.Tensor, sample_rate: int) -> np.ndarray:
    """(T,) -> (N, 12): cepstra of the log mel amplitude (natural log of the power, halved), scaled like a real
    cepstrum (torchaudio's orthonormal DCT / sqrt(2 * bands)), c0 dropped."""
    wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
    scale = 2 * math.sqrt(2 * N_MELS)
    return (_mfcc(sample_rate)(wave).T[:, 1:] / scale).numpy().astype(np.float64)  # (N, 12)


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Frames (N, D) and (M, D) -> the DTW path (K, 2) of (index in a, index in b), Euclidean frame cost."""
    import librosa

    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # (N, M)
    _, path = librosa.sequence.dtw(C=cost)
    return path[::-1]


def mcd(reference: torch.Tensor, synthesized: torch.Tensor, sample_rate: int) -> tuple[float, np.ndarray]:
    """-> (MCD in dB along the DTW path, the path (K, 2) of reference/synthesis frame indices)."""
    a, b = mel_cepstra(reference, sample_rate), mel_cepstra(synthesized, sample_rate)
    path = dtw_path(a, b)
    diff = a[path[:, 0]] - b[path[:, 1]]  # (K, 12)
    return float(_MCD_SCALE * np.sqrt((diff ** 2).sum(1)).mean()), path


def align_to_reference(synthesized: torch.Tensor, path: np.ndarray, n_reference: int, sample_rate: int) -> np.ndarray:
    """Warp the synthesis onto the reference's time axis: for each 10 ms reference frame, the 10 ms of the
    synthesis the DTW path matched to it. -> (n_reference,) samples."""
    hop = int(HOP_S * sample_rate)
    x = torch.as_tensor(synthesized, dtype=torch.float32).reshape(-1).numpy()
    x = np.pad(x, (0, hop))
    first = {}
    for i, j in path:
        first.setdefault(int(i), int(j))
    pieces = [x[first[i] * hop:first[i] * hop + hop] for i in sorted(first)]
    out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return np.pad(out, (0, max(0, n_reference - len(out))))[:n_reference]


def optional_quality(reference: torch.Tensor, aligned: np.ndarray, sample_rate: int) -> dict[str, float]:
    """STOI and wide-band PESQ at 16 kHz of the aligned synthesis against the reference, for the packages
    that are installed; {} when none is."""
    out = {}
    ref16 = torchaudio.functional.resample(torch.as_tensor(reference, dtype=torch.float32).reshape(-1),
                                           sample_rate, 16000).numpy()
    syn16 = torchaudio.functional.resample(torch.from_numpy(aligned.astype(np.float32)), sample_rate, 16000).numpy()
    try:
        from pystoi import stoi
    except ImportError:
        stoi = None
    if stoi is not None:
        out["stoi"] = float(stoi(ref16, syn16, 16000, extended=False))
    try:
        from pesq import pesq
    except ImportError:
        pesq = None
    if pesq is not None:
        try:
            out["pesq"] = float(pesq(16000, ref16, syn16, "wb"))
        except Exception:  # noqa: BLE001 - pesq raises on silence ("No utterances detected"): no score
            out["pesq"] = math.nan
    return out
