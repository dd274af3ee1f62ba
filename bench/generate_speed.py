#!/usr/bin/env python3
"""Generation speed of VALL-E X: AR frames per second (with or without the KV cache; eager or compiled step),
NAR time per second of audio, real-time factor and peak memory. Prints one JSON line per engine and precision,
batch size and decoding mode (`--compile`: eager and compiled in the same run); asserts nothing.

Every run does the same work: a prompt of 225 frames with 20 prompt-text ids, 30 target-text ids, and EOS
held back until --frames frames, so the AR always generates exactly --frames frames per item.
Without --checkpoint the model is the full-size released config with random weights.

Several engines/precisions (`--engine torch --precision fp32 int8`): each configuration runs in a process of its
own (its peak memory is its own), the configurations alternating --rounds times so that a change of machine load
touches all alike (as bench/torch_versions.py does); then one summary line per configuration (medians, and the
ratios to the first configuration).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.machine import machine, peak_rss_mb, reset_peak_rss  # noqa: E402
from valle.codec import FRAME_RATE  # noqa: E402
from valle.config import ModelConfig  # noqa: E402
from valle.models.precision import PRECISIONS, apply_precision  # noqa: E402
from valle.models.valle import VALLE, Sampling  # noqa: E402

PROMPT_FRAMES, PROMPT_TEXT, TARGET_TEXT = 225, 20, 30
ENGINES = ("torch",)
# the figures of the summary line, and whether a ratio to the first configuration is "higher is better"
SUMMARY = {"ar_frames_per_s": True, "ar_step_ms": False, "ar_prefill_s": False, "nar_s_per_audio_s": False,
           "rtf": False, "peak_rss_mb": False, "load_peak_rss_mb": False, "model_mb": False}


def build_model(args) -> VALLE:
    if args.checkpoint:
        from valle.models.checkpoint import load_model

        model = load_model(args.checkpoint, nhead=args.nhead, device=args.device)[0]
    else:
        torch.manual_seed(0)
        with torch.device(args.device):
            model = VALLE(ModelConfig()).eval()
    return apply_precision(model, args.precision)


def model_mb(model: VALLE) -> float:
    """Bytes of the model's tensors (tied ones once), in MB."""
    tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20


def inputs(model: VALLE, batch: int) -> tuple[list, list, list, list]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 70, (PROMPT_TEXT + TARGET_TEXT,), generator=g).to(model.device)
    prompt = torch.randint(0, 1024, (PROMPT_FRAMES, model.config.num_quantizers), generator=g).to(ids.device)
    langs = torch.zeros_like(ids)  # en
    return [ids] * batch, [langs] * batch, [prompt] * batch, [PROMPT_TEXT] * batch


def timed(device: str, fn):
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


def run(model: VALLE, batch: int, mode: str, args) -> dict:
    text, langs, prompts, plens = inputs(model, batch)
    reset_peak_rss()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(args.device)

    def ar(frames: int):  # also an OnnxVALLE (bench/onnx_speed.py): the same signatures
        return model.generate_ar(text, langs, prompts, sampling=Sampling(seed=0, max_frames=frames, min_frames=frames),
                                 use_cache=not args.no_cache, decode_mode=mode)

    _, first_s = timed(args.device, lambda: ar(args.frames))  # warm-up with the timed shapes (compiles, if any)
    _, prefill_s = timed(args.device, lambda: ar(1))
    codes, ar_s = timed(args.device, lambda: ar(args.frames))
    audio_s = batch * args.frames / FRAME_RATE
    step_s = max(ar_s - prefill_s, 1e-9) / (args.frames - 1)
    nar_s = None if args.ar_only else timed(args.device, lambda: model.generate_nar(text, langs, prompts, plens,
                                                                                       codes))[1]
    out = {
        "config": f"{args.engine} {args.precision}, batch {batch}, {'no cache' if args.no_cache else 'KV cache'}, "
                  f"{mode}",
        "engine": args.engine, "precision": args.precision,
        "batch": batch, "frames": args.frames, "kv_cache": not args.no_cache, "decode": mode,
        "ar_frames_per_s": round(batch * args.frames / ar_s, 2),
        "ar_prefill_s": round(prefill_s, 3),
        "ar_step_ms": round(1000 * step_s, 3),
        "ar_step_frames_per_s": round(batch / step_s, 2),
        "first_call_s": round(first_s, 2),  # includes compiling / capturing
        "nar_s_per_audio_s": None if nar_s is None else round(nar_s / audio_s, 4),
        "rtf": None if nar_s is None else round((ar_s + nar_s) / audio_s, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),  # since the model was ready (this batch size's run)
    }
    if args.device.startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(args.device) / 2**20, 1)
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a checkpoint to time [full-size random weights]")
    p.add_argument("--nhead", type=int, default=None, help="attention heads of --checkpoint [its config, else 16]")
    p.add_argument("--frames", type=int, default=150, help="frames generated per item (75 per second) [150]")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes, one JSON line each [1]")
    p.add_argument("--device", default="cpu", help="cpu or cuda [cpu]")
    p.add_argument("--engine", nargs="+", choices=ENGINES, default=["torch"], help="engines to time [torch]")
    p.add_argument("--precision", nargs="+", choices=tuple(PRECISIONS), default=["fp32"],
                   help="precisions to time, each with every engine (valle.models.precision) [fp32]")
    p.add_argument("--rounds", type=int, default=1, help="times every configuration runs, alternating [1]")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole sequence at every AR step")
    p.add_argument("--ar-only", action="store_true", help="time the AR alone (no NAR, so no RTF either)")
    p.add_argument("--compile", nargs="*", choices=("cudagraph", "inductor"), default=None,
                   help="also time these compiled AR steps after eager, in the same run; --compile alone: "
                        "cudagraph and inductor on CUDA, inductor on CPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    args = p.parse_args()
    if args.frames < 2:
        p.error("--frames must be at least 2")
    return args


def time_configuration(args: argparse.Namespace) -> None:
    """One engine and precision, in this process: a JSON line per batch size and decoding mode."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    compiled = args.compile if args.compile else (["cudagraph", "inductor"] if cuda else ["inductor"])
    modes = ["eager"] + (compiled if args.compile is not None and not args.no_cache else [])
    t0 = time.perf_counter()
    model = build_model(args)
    loaded = {"load_s": round(time.perf_counter() - t0, 1), "load_peak_rss_mb": round(peak_rss_mb(), 1),
              "model_mb": round(model_mb(model), 1)}
    with torch.inference_mode():
        for batch in args.batch:
            for mode in modes:
                line = {**run(model, batch, mode, args), **loaded, "device": args.device,
                        "machine": machine(args.device)}
                print(json.dumps(line), flush=True)


def alternate(args: argparse.Namespace) -> None:
    """Every (engine, precision) in a child process of its own, alternating --rounds times; then the summaries."""
    configs = [(e, p) for e in args.engine for p in args.precision]
    lines: dict[tuple, list[dict]] = {}
    for rnd in range(args.rounds):
        for engine, precision in configs:
            child = [sys.executable, __file__, *strip_options(sys.argv[1:], ("--engine", "--precision", "--rounds")),
                     "--engine", engine, "--precision", precision]
            proc = subprocess.run(child, capture_output=True, text=True, env=os.environ)
            if proc.returncode:
                sys.exit(f"{engine} {precision} failed:\n{proc.stderr[-2000:]}")
            for line in map(json.loads, filter(lambda s: s.startswith("{"), proc.stdout.splitlines())):
                lines.setdefault((engine, precision, line["batch"], line["decode"]), []).append(line)
                print(json.dumps({"round": rnd, **line}), flush=True)
    for (engine, precision, batch, mode), rows in lines.items():
        base = lines[(*configs[0], batch, mode)]
        summary = {k: round(median(r[k] for r in rows), 4) for k in SUMMARY if rows[0][k] is not None}
        ratios = {f"{k}_vs_{'_'.join(configs[0])}": round(v / median(r[k] for r in base), 3)
                  for k, v in summary.items()}
        print(json.dumps({"summary": f"{engine} {precision}, batch {batch}, {mode}", "rounds": len(rows),
                          **summary, **ratios, "load_avg_1min": [r["machine"]["load_avg_1min"] for r in rows]}),
              flush=True)


def strip_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """argv without the options `names` and their values."""
    out, skipping = [], False
    for a in argv:
        if a.startswith("--"):
            skipping = a.split("=")[0] in names
        if not skipping:
            out.append(a)
    return out


def main() -> None:
    args = parse_args()
    if len(args.engine) * len(args.precision) * args.rounds == 1:
        time_configuration(argparse.Namespace(**{**vars(args), "engine": args.engine[0],
                                                 "precision": args.precision[0]}))
    else:
        alternate(args)


if __name__ == "__main__":
    main()
