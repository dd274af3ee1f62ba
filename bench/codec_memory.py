#!/usr/bin/env python3
"""Peak memory of encoding one long clip with Encodec 24 kHz: in one encoder call (what the codes stage did before
chunking) vs in chunks of --batch-seconds (Codec.encode now). Each configuration runs in its own process so that
its peak RSS is its own. Random weights (memory does not depend on them). Prints one JSON line per configuration,
with the machine. A benchmark, not a test: it asserts nothing."""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import machine  # noqa: E402
from valle.audio import SAMPLE_RATE  # noqa: E402
from valle.codec import Codec  # noqa: E402


def measure(seconds: float, mode: str, batch_seconds: float) -> dict:
    """Encode `seconds` of noise once; peak RSS (MB) of this process before and after, and the time."""
    torch.set_num_threads(1)
    codec = Codec.from_weights("random", max_batch_seconds=seconds + 1 if mode == "one call" else batch_seconds)
    wave = 0.1 * torch.randn(int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(0))  # (T,)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    codes = codec.encode([wave])[0]  # (frames, 8)
    wall = time.perf_counter() - start
    return {"bench": "codec_memory", "mode": mode, "clip_seconds": seconds,
            "chunk_seconds": None if mode == "one call" else batch_seconds, "frames": codes.shape[0],
            "peak_rss_mb_before": round(before),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "encode_seconds": round(wall, 1), "machine": machine("cpu")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one-call-seconds", type=float, nargs="*", default=[60, 120],
                        help="clip lengths to encode in one encoder call")
    parser.add_argument("--chunked-seconds", type=float, nargs="*", default=[60, 120, 600],
                        help="clip lengths to encode in chunks")
    parser.add_argument("--batch-seconds", type=float, default=15.0, help="chunk length (the CPU default)")
    parser.add_argument("--child", nargs=2, metavar=("SECONDS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(float(args.child[0]), args.child[1], args.batch_seconds)), flush=True)
        return
    configs = [(s, "one call") for s in args.one_call_seconds] + [(s, "chunked") for s in args.chunked_seconds]
    for seconds, mode in configs:
        subprocess.run([sys.executable, __file__, "--child", str(seconds), mode, "--batch-seconds",
                        str(args.batch_seconds)], check=True)


if __name__ == "__main__":
    main()
