#!/usr/bin/env python3
"""Encodec 24 kHz encoding throughput (seconds of audio encoded per second): one file at a time vs batched
by total duration, on the CPU and on CUDA when present. Random weights (speed does not depend on them).
Prints one JSON line per configuration, with the machine. A benchmark, not a test: it asserts nothing."""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import machine  # noqa: E402
from valle.audio import SAMPLE_RATE  # noqa: E402
from valle.codec import Codec  # noqa: E402


def utterances(n: int, seed: int) -> list[torch.Tensor]:
    """n waves of 2-12 s (a LibriTTS-like spread of lengths)."""
    g = torch.Generator().manual_seed(seed)
    lengths = (2 + 10 * torch.rand(n, generator=g)) * SAMPLE_RATE
    return [0.1 * torch.randn(int(n_samples), generator=g) for n_samples in lengths]  # (T,) each


def run(codec: Codec, waves: list[torch.Tensor], batched: bool) -> float:
    if codec.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    if batched:
        codec.encode(waves)
    else:
        for wave in waves:
            codec.encode([wave])
    if codec.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-utterances", type=int, default=24, help="utterances of 2-12 s to encode")
    parser.add_argument("--batch-seconds", type=float, nargs="+", default=[15, 60, 240],
                        help="max padded seconds per batch to try")
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
                        help="devices to measure (default: cpu, and cuda when present)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    waves = utterances(args.num_utterances, seed=0)
    audio_seconds = sum(w.numel() for w in waves) / SAMPLE_RATE
    for device in args.devices:
        codec = Codec.from_weights("random", device=device)
        run(codec, waves[:2], batched=True)  # warm-up (allocator, kernels)
        default_seconds = codec.max_batch_seconds  # one file at a time: a long file still goes in chunks of this
        configs = [("one file at a time", None)] + [("batched", s) for s in args.batch_seconds]
        for mode, batch_seconds in configs:
            codec.max_batch_seconds = batch_seconds or default_seconds
            wall = run(codec, waves, batched=batch_seconds is not None)
            print(json.dumps({"bench": "codec_throughput", "device": device, "mode": mode,
                              "max_batch_seconds": batch_seconds, "utterances": len(waves),
                              "audio_seconds": round(audio_seconds, 1), "wall_seconds": round(wall, 2),
                              "audio_seconds_per_second": round(audio_seconds / wall, 1),
                              "machine": machine(device)}), flush=True)


if __name__ == "__main__":
    main()
