"""The benchmarks of bench/gpu_check.py, one JSON row per configuration (figures only, nothing asserted):
  train_step  full-size AR/NAR training steps: bf16 autocast + ScaledAdam, fp16 + GradScaler, AR bf16 +
              torch.compile: step time, audio frames/s, peak CUDA memory, FLOPs (counted) and MFU
  generate    batch 1 and 16, eager / CUDA graph / inductor AR step (bench/generate_speed.py)
  codec       Encodec encoding throughput, one file per call and batched (bench/codec_throughput.py)
Each `check_*(args)` takes gpu_check's options (device, tiny, train sizes) and returns its rows.
"""

from __future__ import annotations

import argparse
import statistics
import time

PEAK_TFLOPS = {"H200": 989, "H100": 989, "H800": 989, "A100": 312, "A800": 312, "L40S": 362, "L4": 121,
               "A10G": 125, "A10": 125, "RTX 4090": 165, "V100": 125}  # dense bf16/fp16 tensor-core peaks


def bucketed_batch(batch: int, frames: int, text: int, device) -> dict:
    """A batch as the bucketing sampler makes it: lengths within 10% of each other (about 5% padding)."""
    import torch

    from valle.config import NUM_QUANTIZERS

    g = torch.Generator().manual_seed(0)
    b = {"text_tokens": torch.randint(5, 70, (batch, text), generator=g),  # (B, L)
         "text_lens": torch.linspace(text, int(text * 0.9), batch).long(),  # (B,)
         "text_langs": torch.zeros(batch, text, dtype=torch.long),  # (B, L)
         "codes": torch.randint(0, 1024, (batch, frames, NUM_QUANTIZERS), generator=g),  # (B, T, 8)
         "code_lens": torch.linspace(frames, int(frames * 0.9), batch).long()}  # (B,)
    return {k: v.to(device) for k, v in b.items()}


def peak_flops(device: str, override: float | None) -> float | None:
    import torch

    if override:
        return override * 1e12
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS.items() if key in name), None)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def train_step(args, half: str, dtype_name: str, compile: bool) -> dict:
    """Median time of full training steps (autocast forward, backward, ScaledAdam) on a bucketed batch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from valle.config import ModelConfig, OptimConfig
    from valle.models.valle import VALLE
    from valle.training.objective import Objective
    from valle.training.optim import build_optimizer

    dev, dtype = args.device, getattr(torch, dtype_name)
    torch.manual_seed(0)
    size = dict(d_model=64, nhead=4, num_layers=2) if args.tiny else {}
    model = VALLE(ModelConfig(**size)).place(dev, (half,)).train()  # as the trainer: the other half in host memory
    named = model.half_named_parameters(half)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in named:
        p.requires_grad_(True)
    opt = build_optimizer(named, OptimConfig())
    scaler = torch.amp.GradScaler(torch.device(dev).type, enabled=dtype == torch.float16)
    objective = Objective(model, half)
    if compile:
        objective.compile()
    b, frames, text = (4, 60, 12) if args.tiny else (args.train_batch, args.train_frames, args.train_frames // 5)
    batch = bucketed_batch(b, frames, text, dev)

    def fwd_bwd(objective):
        with torch.autocast(torch.device(dev).type, dtype=dtype, enabled=dtype != torch.float32):
            loss = objective(batch)["loss"]
        scaler.scale(loss).backward()
        return loss

    def step():
        loss = fwd_bwd(objective)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    for _ in range(3):
        loss = step()
    sync(dev)
    warmup_s = time.perf_counter() - t0
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(args.train_steps):
        t0 = time.perf_counter()
        loss = step()
        sync(dev)
        times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{half} {dtype_name}: loss {float(loss)}")
    counter = FlopCounterMode(display=False)
    with counter:
        fwd_bwd(Objective(model, half))  # counted eagerly: the same FLOPs, compiled or not
    opt.zero_grad(set_to_none=True)
    step_s, audio_frames = statistics.median(times), int(batch["code_lens"].sum())
    flops, peak = counter.get_total_flops(), peak_flops(dev, args.peak_tflops)
    out = {"half": half, "dtype": dtype_name, "compile": compile, "optimizer": "scaled_adam", "batch": b,
           "frames": frames, "text": text, "padding": round(1 - audio_frames / (b * frames), 3),
           "step_s": round(step_s, 4), "audio_frames_per_s": round(audio_frames / step_s, 1),
           "warmup_s": round(warmup_s, 2), "tflops_per_step": round(flops / 1e12, 3),
           "mfu": round(flops / step_s / peak, 4) if peak else None, "loss": round(float(loss), 3)}
    if dev.startswith("cuda"):
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
    return out


def check_train_step(args) -> list[dict]:
    import torch

    rows = [("ar", "bfloat16", False), ("nar", "bfloat16", False), ("ar", "float16", False)]
    if args.device.startswith("cuda"):
        rows.append(("ar", "bfloat16", True))  # compiling fwd + bwd takes a minute or two: one half only
    out = []
    for row in rows:
        out.append(train_step(args, *row))
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()  # the previous model and optimizer are gone: their memory is not counted next
    return out


def check_generate(args) -> list[dict]:
    import torch

    from bench.generate_speed import run
    from valle.config import ModelConfig
    from valle.models.valle import VALLE

    cuda = args.device.startswith("cuda")
    torch.manual_seed(0)
    size = dict(d_model=64, nhead=4, num_layers=2) if args.tiny else {}
    dtype = "bfloat16" if cuda else "float32"
    model = VALLE(ModelConfig(**size)).to(args.device).eval().to(getattr(torch, dtype))
    opts = argparse.Namespace(device=args.device, frames=30 if args.tiny else 150, no_cache=False, ar_only=False,
                              engine="torch", precision={"bfloat16": "bf16", "float32": "fp32"}[dtype])
    modes = ["eager", "cudagraph", "inductor"] if cuda else ["eager"]
    rows = []
    with torch.inference_mode():
        for batch in (1, 16) if not args.tiny else (1, 4):
            for mode in modes:
                rows.append(run(model, batch, mode, opts))
    return rows


def check_codec(args) -> list[dict]:
    import torch

    from bench.codec_throughput import run, utterances
    from valle.audio import SAMPLE_RATE
    from valle.codec import Codec

    waves = utterances(2 if args.tiny else 24, seed=0)
    seconds = sum(w.numel() for w in waves) / SAMPLE_RATE
    codec = Codec.from_weights("random", device=args.device)
    run(codec, waves[:1], batched=True)  # warm-up
    rows = []
    for batched in (False, True):  # one file per call; batches of the device's default size
        wall = run(codec, waves, batched=batched)
        rows.append({"batched": batched, "max_batch_seconds": codec.max_batch_seconds if batched else None,
                     "audio_seconds": round(seconds, 1), "audio_seconds_per_second": round(seconds / wall, 1)})
    del codec
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows
