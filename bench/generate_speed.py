#!/usr/bin/env python3
"""Generation speed of VALL-E X: AR frames per second (with or without the KV cache; eager or compiled step),
NAR time per second of audio, real-time factor and peak memory. Prints one JSON line per batch size and decoding
mode (`--compile`: eager and compiled in the same run); asserts nothing.

Every run does the same work: a prompt of 225 frames with 20 prompt-text ids, 30 target-text ids, and EOS
held back until --frames frames, so the AR always generates exactly --frames frames per item.
Without --checkpoint the model is the full-size released config with random weights.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.machine import machine  # noqa: E402
from valle.codec import FRAME_RATE  # noqa: E402
from valle.config import ModelConfig  # noqa: E402
from valle.models.valle import VALLE, Sampling  # noqa: E402

PROMPT_FRAMES, PROMPT_TEXT, TARGET_TEXT = 225, 20, 30


def build_model(args) -> VALLE:
    if args.checkpoint:
        from valle.models.checkpoint import load_model

        model = load_model(args.checkpoint, nhead=args.nhead, device=args.device)[0]
    else:
        torch.manual_seed(0)
        with torch.device(args.device):
            model = VALLE(ModelConfig()).eval()
    return model.to(getattr(torch, args.dtype))


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
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(args.device)

    def ar(frames: int):  # also an OnnxVALLE (bench/onnx_speed.py): the same signatures
        return model.generate_ar(text, langs, prompts, sampling=Sampling(seed=0, max_frames=frames, min_frames=frames),
                                 use_cache=not args.no_cache, decode_mode=mode)

    _, first_s = timed(args.device, lambda: ar(args.frames))  # warm-up with the timed shapes (compiles, if any)
    _, prefill_s = timed(args.device, lambda: ar(1))
    codes, ar_s = timed(args.device, lambda: ar(args.frames))
    _, nar_s = timed(args.device, lambda: model.generate_nar(text, langs, prompts, plens, codes))
    audio_s = batch * args.frames / FRAME_RATE
    step_s = max(ar_s - prefill_s, 1e-9) / (args.frames - 1)
    out = {
        "config": f"batch {batch}, {'no cache' if args.no_cache else 'KV cache'}, {mode}, {args.dtype}",
        "batch": batch, "frames": args.frames, "kv_cache": not args.no_cache, "decode": mode, "dtype": args.dtype,
        "ar_frames_per_s": round(batch * args.frames / ar_s, 2),
        "ar_prefill_s": round(prefill_s, 3),
        "ar_step_ms": round(1000 * step_s, 3),
        "ar_step_frames_per_s": round(batch / step_s, 2),
        "first_call_s": round(first_s, 2),  # includes compiling / capturing
        "nar_s_per_audio_s": round(nar_s / audio_s, 4),
        "rtf": round((ar_s + nar_s) / audio_s, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.device.startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(args.device) / 2**20, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a checkpoint to time [full-size random weights]")
    p.add_argument("--nhead", type=int, default=None, help="attention heads of --checkpoint [its config, else 16]")
    p.add_argument("--frames", type=int, default=150, help="frames generated per item (75 per second) [150]")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes, one JSON line each [1]")
    p.add_argument("--device", default="cpu", help="cpu or cuda [cpu]")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="model weights and activations [float32]")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole sequence at every AR step")
    p.add_argument("--compile", nargs="*", choices=("cudagraph", "inductor"), default=None,
                   help="also time these compiled AR steps after eager, in the same run; --compile alone: "
                        "cudagraph and inductor on CUDA, inductor on CPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.frames < 2:
        p.error("--frames must be at least 2")
    cuda = args.device.startswith("cuda")
    compiled = args.compile if args.compile else (["cudagraph", "inductor"] if cuda else ["inductor"])
    modes = ["eager"] + (compiled if args.compile is not None and not args.no_cache else [])
    model = build_model(args)
    with torch.inference_mode():
        for batch in args.batch:
            for mode in modes:
                line = {**run(model, batch, mode, args), "device": args.device, "machine": machine(args.device)}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
