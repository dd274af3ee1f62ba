#!/usr/bin/env python3
"""Evaluation metrics' speed on the CPU: utterances per second for each metric of valle evaluate (failure
detectors, speaker similarity with resemblyzer, MCD with DTW, STOI, PESQ, WER/CER scoring of a transcript).
Speech: espeak-ng sentences (2-4 s) scored against another voice's rendering of the same sentence.
ASR itself (Whisper) is not measured: it needs a downloaded model. Prints one JSON line per metric, with the
machine. A benchmark, not a test: it asserts nothing."""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import machine  # noqa: E402
from valle.audio import SAMPLE_RATE  # noqa: E402
from valle.eval import asr, distance  # noqa: E402
from valle.eval.detectors import detect  # noqa: E402
from valle.eval.speaker import get_speaker_encoder  # noqa: E402

SENTENCES = ["The small boat drifted slowly toward the quiet harbor.",
             "Please bring the blue folder to the second meeting.",
             "Seven children waited patiently for the morning train.",
             "He painted the old fence a bright shade of green.",
             "The river rose quickly after three days of rain."]


def espeak(text: str, voice: str, tmp: Path) -> torch.Tensor:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(tmp / "s.wav"), text], check=True)
    wave, rate = sf.read(str(tmp / "s.wav"), dtype="float32")
    return torchaudio.functional.resample(torch.from_numpy(wave), rate, SAMPLE_RATE)  # (T,)


def timed(fn, pairs) -> float:
    fn(*pairs[0])  # warm-up: imports, numba compilation, model load
    start = time.perf_counter()
    for ref, syn in pairs:
        fn(ref, syn)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=4, help="times the 5 sentence pairs are scored [4]")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads [1]")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [(espeak(s, "en-us", Path(tmp)), espeak(s, "en-us+f4", Path(tmp))) for s in SENTENCES] * args.repeat
    encoder = get_speaker_encoder("resemblyzer")
    quality = {}

    def mcd_and_quality(ref, syn, which=None):
        _, path = distance.mcd(ref, syn, SAMPLE_RATE)
        if which:
            aligned = distance.align_to_reference(syn, path, ref.numel(), SAMPLE_RATE)
            quality.update(distance.optional_quality(ref, aligned, SAMPLE_RATE))

    metrics = {
        "detectors": lambda ref, syn: detect(syn, SAMPLE_RATE, expected_seconds=ref.numel() / SAMPLE_RATE),
        "sim (resemblyzer, 2 embeddings)": lambda ref, syn: encoder.similarity(encoder.embed(ref, SAMPLE_RATE),
                                                                             encoder.embed(syn, SAMPLE_RATE)),
        "mcd (dtw)": mcd_and_quality,
        "mcd + stoi + pesq (aligned)": lambda ref, syn: mcd_and_quality(ref, syn, "quality"),
        "wer scoring (normalise + jiwer)": lambda ref, syn: asr.error_counts(SENTENCES[0], SENTENCES[1].upper(), "en"),
    }
    seconds = sum(s.numel() for _, s in pairs) / SAMPLE_RATE
    for name, fn in metrics.items():
        wall = timed(fn, pairs)
        print(json.dumps({"bench": "evaluate_speed", "metric": name, "utterances": len(pairs),
                          "audio_seconds": round(seconds, 1), "wall_seconds": round(wall, 3),
                          "utterances_per_second": round(len(pairs) / wall, 1),
                          "optional_metrics": sorted(quality) if "stoi" in name else None,
                          "machine": machine("cpu")}), flush=True)


if __name__ == "__main__":
    main()
