"""Long recordings read in blocks: the whole file is never in memory.

`speech_probabilities` streams a file through silero-vad (its TorchScript model ships inside the `silero-vad`
wheel: offline, no onnxruntime) and keeps one probability and one level per 32 ms frame (1 hour ->
2 x 112,500 floats);
`read_span` reads one segment back (mono, at the rate asked) by seeking into the file.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from valle.audio import AudioError, AudioInfo, audio_info

VAD_RATE = 16000
VAD_FRAME = 512  # samples per silero-vad frame at 16 kHz
FRAME_SECONDS = VAD_FRAME / VAD_RATE  # 0.032 s
BLOCK_SECONDS = 60  # how much of the file is decoded at a time
PROGRESS_SECONDS = 600  # recordings at least this long show a progress bar


@functools.lru_cache(maxsize=1)
def _silero():
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError as e:
        raise ImportError(f"segmenting needs silero-vad ({e}): pip install 'valle-toolkit[segment]'") from None
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets torch to 1 thread for the whole process
    return load_silero_vad(onnx=False)


def check_recording(path: Path) -> AudioInfo:
    """The header, with truncation and emptiness as one-line AudioErrors."""
    info = audio_info(path)
    if info.num_samples == 0:
        raise AudioError(path, "no samples", "the file holds no audio samples (truncated or empty)")
    return info


def _mono_blocks(info: AudioInfo, rate: int, start: int = 0, stop: int | None = None):
    """Yield float32 (T,) mono blocks resampled to `rate`, from sample `start` to `stop` of the file. A decoder
    error anywhere (the header, a block in the middle, the last one) is an AudioError saying where."""
    position = start
    try:
        with sf.SoundFile(info.path) as f:
            f.seek(start)
            while position < (stop if stop is not None else info.num_samples):
                left = (stop if stop is not None else info.num_samples) - position
                data = f.read(min(left, BLOCK_SECONDS * info.sample_rate), dtype="float32", always_2d=True)  # (T, C)
                if len(data) == 0:
                    break
                position += len(data)
                wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # (T,)
                if info.sample_rate != rate:
                    wave = torchaudio.functional.resample(wave, info.sample_rate, rate)
                yield wave
    except sf.SoundFileError as e:  # libsndfile's errors (lost sync, a bad frame, a failed seek ...)
        raise AudioError(info.path, "unreadable", f"decoder error after {position / info.sample_rate:.1f} s of "
                         f"{info.duration:.1f} s: {e} (truncated or corrupted)") from None


def speech_probabilities(info: AudioInfo) -> tuple[np.ndarray, np.ndarray]:
    """-> (N,) silero-vad speech probability and (N,) level in dB of every 32 ms frame of the recording."""
    from tqdm import tqdm

    model = _silero()
    model.reset_states()
    probs, levels, rest, decoded = [], [], torch.zeros(0), 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 512-sample steps: more threads only add synchronisation (measured: 10x slower)
    bar = tqdm(total=round(info.duration), unit="s", desc=f"voice activity {Path(info.path).name}",
               disable=info.duration < PROGRESS_SECONDS)
    try:
        with torch.inference_mode():
            for block in _mono_blocks(info, VAD_RATE):
                decoded += len(block)
                block = torch.cat([rest, block])
                whole = len(block) // VAD_FRAME * VAD_FRAME
                frames = block[:whole].view(-1, VAD_FRAME)  # (F, 512)
                levels.append(10 * torch.log10(frames.pow(2).mean(1) + 1e-12).numpy())  # (F,)
                for frame in frames:  # the model keeps its state from frame to frame
                    probs.append(model(frame, VAD_RATE).item())
                rest = block[whole:]
                bar.update(round(len(frames) * FRAME_SECONDS))
    finally:
        torch.set_num_threads(threads)
        bar.close()
    if decoded < 0.98 * info.duration * VAD_RATE:
        raise AudioError(info.path, "truncated", f"header declares {info.duration:.1f} s, "
                                                 f"only {decoded / VAD_RATE:.1f} s decode")
    return np.asarray(probs, dtype=np.float32), np.concatenate(levels) if levels else np.zeros(0, np.float32)


def read_span(info: AudioInfo, start: float, end: float, rate: int) -> torch.Tensor:
    """Seconds start..end of the recording, mono, at `rate`: (T,)."""
    first, last = int(start * info.sample_rate), min(int(end * info.sample_rate), info.num_samples)
    blocks = list(_mono_blocks(info, info.sample_rate, first, last))
    wave = torch.cat(blocks) if blocks else torch.zeros(0)
    return torchaudio.functional.resample(wave, info.sample_rate, rate) if info.sample_rate != rate else wave
