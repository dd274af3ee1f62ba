#!/usr/bin/env python3
"""One full-size linear (the AR's in-projection, feed-forward up and down) through each int8 kernel that was tried,
against float32, at the rows of an AR step (batch 1 and 16) and of a prompt pass. Prints one JSON line per kernel and
shape (median ms over --repeats, the kernels interleaved so that machine load touches all alike); asserts nothing.

Kernels: fp32 (F.linear); ours (valle.models.precision.Int8Linear: int8pack for one position per sequence, the weight
widened to float32 for more); torchao 0.15 Int8WeightOnlyConfig (when torchao is importable); torch's dynamic int8
(`quantize_dynamic`, fbgemm: activations quantised too, not weight-only).

    python bench/int8_kernels.py --repeats 30
"""

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.machine import machine  # noqa: E402
from valle.models.precision import Int8Linear  # noqa: E402

SHAPES = {"in_proj": (1024, 3072), "linear1": (1024, 4096), "linear2": (4096, 1024)}  # (in, out)
INPUTS = {"step, batch 1": (1, 1), "step, batch 16": (16, 1), "prompt pass, 300 positions": (1, 300)}


def kernels(linear: torch.nn.Linear) -> dict:
    out = {"fp32": linear, "ours": Int8Linear(linear)}
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        ao = copy.deepcopy(linear)
        quantize_(ao, Int8WeightOnlyConfig())
        out["torchao"] = ao
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out["dynamic"] = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(copy.deepcopy(linear)),
                                                                {torch.nn.Linear}, dtype=torch.qint8)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30, help="timed calls per kernel and shape [30]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.inference_mode():
        for layer, (n_in, n_out) in SHAPES.items():
            ks = kernels(torch.nn.Linear(n_in, n_out).eval())
            for case, (batch, positions) in INPUTS.items():
                x = torch.randn(batch, positions, n_in)  # (B, T, in)
                times: dict[str, list[float]] = {name: [] for name in ks}
                for _ in range(args.repeats + 2):
                    for name, k in ks.items():
                        t0 = time.perf_counter()
                        k(x)
                        times[name].append(1000 * (time.perf_counter() - t0))
                base = median(times["fp32"][2:])
                for name, ts in times.items():
                    ms = median(ts[2:])
                    print(json.dumps({"layer": layer, "in": n_in, "out": n_out, "input": case, "kernel": name,
                                      "ms": round(ms, 3), "vs_fp32": round(ms / base, 3),
                                      "machine": machine("cpu")}), flush=True)


if __name__ == "__main__":
    main()
