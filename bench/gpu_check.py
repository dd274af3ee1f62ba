#!/usr/bin/env python3
"""One prepared check of every CUDA path, with figures: `make gpu-check` on a GPU machine (a few minutes),
`make gpu-check ARGS="--device cpu --tiny"` in CI (so that the script cannot rot).

On a machine with only torch preinstalled it first installs the wheels of `.whl/` (made by `make gpu-wheels`
on a machine with a package index) into `.whl/site` with `pip install --no-index --no-deps --target`.
Then, one JSON line per figure on stdout (and in --out):
  cuda_tests   the tests marked `cuda` (pytest)
  train_step   full-size AR/NAR training steps: bf16 autocast + ScaledAdam, fp16 + GradScaler, AR bf16 + torch.compile:
               step time, audio frames/s, peak CUDA memory, FLOPs (counted) and MFU
  generate     batch 1 and 16, eager / CUDA graph / inductor AR step, bf16: AR frames/s, step ms, NAR s per audio s,
               RTF, peak memory (bench/generate_speed.py)
  codec        Encodec encoding throughput, seconds of audio per second
  codes_sharded  valle prepare codes under torchrun, 2 worker processes on one device: the codes of one process
  serve        the speech API under 1 and 16 clients and a streamed 3-sentence input (bench/serve_load.py): AR
               frames/s, p50/p95 latency, time to first audio
  ddp          a 1-GPU torchrun DDP run of valle train on a small prepared corpus
  resume       a CUDA run resumed on the CPU and then on CUDA again
Every line has "check", "ok" and "seconds"; a failed check has "error" and the script exits 1 after the others ran.
A summary table goes to stderr at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

# This file runs the steps in order and reports; tools/gpu_setup.py installs and runs the cuda tests (standard
# library only: it comes first), bench/gpu_benchmarks.py and bench/gpu_runs.py hold the checks that need the toolkit.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gpu_benchmarks import check_codec, check_generate, check_train_step  # noqa: E402
from bench.gpu_runs import check_codes_sharded, check_ddp, check_resume, check_serve  # noqa: E402
from tools.gpu_setup import ensure_dependencies, run_cuda_tests  # noqa: E402

CHECKS = {"cuda_tests": lambda args: run_cuda_tests(), "train_step": check_train_step, "generate": check_generate,
          "codec": check_codec, "codes_sharded": check_codes_sharded, "serve": check_serve, "ddp": check_ddp,
          "resume": check_resume}


def summary(records: list[dict]) -> str:
    keys = ("half", "dtype", "compile", "batch", "decode", "step_s", "audio_frames_per_s", "mfu", "ar_frames_per_s",
            "ar_step_ms", "rtf", "peak_cuda_mb", "peak_gpu_mb", "batched", "audio_seconds_per_second", "summary",
            "legs", "wall_s", "shards", "identical", "scenario", "clients", "latency_p50_s", "ratio", "error")
    lines = [f"{'check':<13} {'ok':<4} {'s':>6}  figures"]
    for r in records:
        figures = ", ".join(f"{k}={r[k]}" for k in keys if r.get(k) is not None)
        lines.append(f"{r['check']:<13} {'ok' if r['ok'] else 'FAIL':<4} {r['seconds']:>6}  {figures[:200]}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (CI) [cuda]")
    p.add_argument("--tiny", action="store_true", help="a tiny model and little data (CI on a CPU)")
    p.add_argument("--only", nargs="+", choices=list(CHECKS), default=list(CHECKS), help="run only these checks")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="checks not started within this many seconds are reported as skipped [480]")
    p.add_argument("--train-batch", type=int, default=8, help="full-size training batch: utterances [8]")
    p.add_argument("--train-frames", type=int, default=750, help="full-size training batch: longest, frames [750]")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps (median) [5]")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak for MFU [by name]")
    p.add_argument("--out", default=None, help="also write the JSON lines to this file")
    p.add_argument("--work", default=None, help="folder for the generated corpus and runs [a temporary one]")
    args = p.parse_args()
    start = time.perf_counter()
    records: list[dict] = []
    out = open(args.out, "w") if args.out else None

    def emit(record: dict) -> None:
        records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    t0 = time.perf_counter()
    try:
        deps = ensure_dependencies()
        emit({"check": "wheels", "ok": True, "seconds": round(time.perf_counter() - t0, 1), **deps})
    except Exception as e:  # nothing else can run without the dependencies
        emit({"check": "wheels", "ok": False, "seconds": round(time.perf_counter() - t0, 1), "error": str(e)})
        print(summary(records), file=sys.stderr)
        return 1
    import torch

    from bench.machine import machine

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (use --device cpu --tiny on a CPU)", file=sys.stderr)
        return 2
    emit({"check": "machine", "ok": True, "seconds": 0.0, "device": args.device, "tiny": args.tiny,
          "machine": machine(args.device), "cuda": torch.version.cuda})
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        args.work = Path(args.work or tmp)
        args.work.mkdir(parents=True, exist_ok=True)
        for name in args.only:
            if time.perf_counter() - start > args.budget_s:
                emit({"check": name, "ok": False, "seconds": 0.0,
                      "error": f"skipped: --budget-s {args.budget_s} spent"})
                continue
            t0 = time.perf_counter()
            try:
                rows = CHECKS[name](args)
                seconds = round(time.perf_counter() - t0, 1)
                for row in rows:
                    emit({"check": name, "ok": True, "seconds": seconds, **row})
            except Exception as e:
                tb = traceback.format_exc()
                print(tb, file=sys.stderr)
                emit({"check": name, "ok": False, "seconds": round(time.perf_counter() - t0, 1),
                      "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"})
    total = round(time.perf_counter() - start, 1)
    print(summary(records) + f"\ntotal {total} s", file=sys.stderr)
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
