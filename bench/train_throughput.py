#!/usr/bin/env python3
"""Training step speed and memory of the AR and NAR halves at a fixed batch (random weights).

Prints one JSON line per configuration: step_s (forward + backward + optimizer step), fwd_bwd_s, optimizer_s,
frames_per_s (audio frames per second of whole steps), fwd_bwd_frames_per_s, peak_rss_mb, and on CUDA
peak_cuda_mb and mfu (model FLOPs utilisation of forward + backward against --peak-tflops). Both peaks count
from the first step on (setup, e.g. building the whole model on the host, is not counted; peak_rss_since says
"start" where Linux's peak reset is missing).
Each configuration runs in a process of its own, so peak memory is its own.

--adapter lora times LoRA adapter training (base frozen) next to full fine-tuning of the same half, and
--activation-checkpointing times every configuration without and with it, all in the same run.

--untrained-half host (the default) keeps the half that is not trained off the training device, as the trainer
does on a GPU (there: in host memory). On a CPU-only machine the host is the device, so the bench drops that
half (meta tensors) to measure what the training device would hold; `device` keeps it resident, `both` runs
each configuration both ways."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.machine import machine, peak_rss_mb, reset_peak_rss  # noqa: E402
from valle.config import NUM_QUANTIZERS, AdapterConfig, ModelConfig, OptimConfig  # noqa: E402
from valle.models.adapters import AdapterSpec, attach, parse_targets  # noqa: E402
from valle.models.layers import set_activation_checkpointing  # noqa: E402
from valle.models.valle import VALLE  # noqa: E402
from valle.training.objective import trained_halves  # noqa: E402
from valle.training.optim import build_optimizer  # noqa: E402


def make_batch(batch: int, frames: int, text: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    lens = torch.linspace(frames, frames * 3 // 4, batch).long()  # (B,) realistic bucket spread
    text_lens = torch.linspace(text, text * 3 // 4, batch).long()  # (B,)
    b = {"text_tokens": torch.randint(5, 70, (batch, text), generator=g),  # (B, L)
         "text_lens": text_lens, "text_langs": torch.zeros(batch, text, dtype=torch.long),
         "codes": torch.randint(0, 1024, (batch, frames, NUM_QUANTIZERS), generator=g),  # (B, T, 8)
         "code_lens": lens}
    return {k: v.to(device) for k, v in b.items()}


def use_float_masks() -> None:
    """The reference's way, for comparison: every boolean mask becomes an additive float mask of shape
    (B, H, S, S) before attention (built in every layer, as lifeiteng-style code does)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def attention(q, k, v, attn_mask=None, **kw):
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            full = attn_mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])  # (B, H, S, S)
            attn_mask = torch.zeros(full.shape, dtype=q.dtype, device=q.device).masked_fill(~full, float("-inf"))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    torch.nn.functional.scaled_dot_product_attention = attention


def flops_per_step(n_params: int, tokens: int) -> float:
    """6 * parameters * tokens: forward + backward of the dense layers (attention scores not counted)."""
    return 6.0 * n_params * tokens


def place(model: VALLE, half: str, device: torch.device, untrained_half: str) -> VALLE:
    """The model as the trainer places it: the trained half on `device`, the other where `untrained_half` says."""
    if untrained_half == "device":
        return model.to(device)
    # On a GPU the other half is in host memory, not counted in peak_cuda_mb. Here the host is the device:
    # the other half goes to the meta device, out of what is measured.
    return model.place(device, (half,), elsewhere="meta" if device.type == "cpu" else "cpu")


def run(args, half: str, adapter: str, checkpointing: bool, untrained_half: str) -> dict:
    device = torch.device(args.device)
    if args.masks == "float":
        use_float_masks()
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=args.dim, nhead=args.heads, num_layers=args.layers)
    model = place(VALLE(cfg), half, device, untrained_half).train()
    set_activation_checkpointing(model, checkpointing)
    if adapter == "lora":  # the base frozen: no gradients, no optimizer state for it
        spec = AdapterSpec(rank=args.lora_rank, alpha=2.0 * args.lora_rank, dropout=args.lora_dropout,
                           targets=parse_targets(args.lora_targets),
                           halves=(half,))
        trained = attach(model, spec).train().named_adapter_parameters()
    else:
        trained = model.half_named_parameters(half)
    opt = build_optimizer(trained, OptimConfig(optimizer=args.optimizer))
    batch = make_batch(args.batch, args.frames, args.text, device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    fwd_bwd, opt_step = [], []
    steps_only = reset_peak_rss()  # the steps' peak, as on CUDA (the model was built on the host first)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup + args.steps):
        t0 = _now(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(batch, half=half)["loss"]
        loss.backward()
        t1 = _now(device)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = _now(device)
        if i >= args.warmup:
            fwd_bwd.append(t1 - t0)
            opt_step.append(t2 - t1)
    fb, os_ = median(fwd_bwd), median(opt_step)
    frames = int(batch["code_lens"].sum())
    tokens = frames + int(batch["text_lens"].sum())
    out = {"half": half, "dim": args.dim, "heads": args.heads, "layers": args.layers, "batch": args.batch,
           "frames": args.frames, "text": args.text, "device": args.device, "dtype": args.dtype,
           "masks": args.masks, "optimizer": args.optimizer, "adapter": adapter,
           "lora_rank": args.lora_rank if adapter == "lora" else None,
           "lora_dropout": args.lora_dropout if adapter == "lora" else None, "activation_checkpointing": checkpointing,
           "untrained_half": untrained_half,
           "trained_params": sum(p.numel() for _, p in trained), "step_s": round(fb + os_, 4),
           "fwd_bwd_s": round(fb, 4), "optimizer_s": round(os_, 4),
           "frames_per_s": round(frames / (fb + os_), 1), "fwd_bwd_frames_per_s": round(frames / fb, 1),
           "peak_rss_mb": round(peak_rss_mb()), "peak_rss_since": "steps" if steps_only else "start",
           "machine": machine(str(device))}
    if device.type == "cuda":
        n = sum(p.numel() for _, p in model.half_named_parameters(half))
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        out["mfu"] = round(flops_per_step(n, tokens) / fb / (args.peak_tflops * 1e12), 4)
    return out


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dim", type=int, default=1024, help="model width")
    p.add_argument("--heads", type=int, default=16, help="attention heads")
    p.add_argument("--layers", type=int, default=12, help="layers per half")
    p.add_argument("--batch", type=int, default=4, help="utterances per batch")
    p.add_argument("--frames", type=int, default=300, help="audio frames of the longest utterance")
    p.add_argument("--text", type=int, default=50, help="text tokens of the longest utterance")
    p.add_argument("--half", "--stage", choices=("ar", "nar", "both"), default="both",
                   help="which half to time (--stage: its old name)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="autocast dtype")
    p.add_argument("--masks", choices=("bool", "float", "both"), default="both",
                   help="attention masks: bool (ours) or float (the reference's way, for comparison)")
    p.add_argument("--optimizer", choices=("scaled_adam", "adamw"), default="scaled_adam",
                   help="the optimizer stepped after each backward (training's default: scaled_adam)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device peak for MFU (H100 SXM bf16 dense: 989)")
    p.add_argument("--adapter", choices=("none", "lora"), default="none",
                   help="lora: time LoRA adapter training next to full fine-tuning of the same half")
    p.add_argument("--lora-rank", type=int, default=8, help="rank of the adapters (alpha 2 x rank)")
    p.add_argument("--lora-targets", default=AdapterConfig.lora_targets, help="adapted weights: attn, ffn, predict")
    p.add_argument("--lora-dropout", type=float, default=AdapterConfig.lora_dropout,
                   help="dropout on the adapters' input")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="time every configuration without and with activation checkpointing")
    p.add_argument("--untrained-half", choices=("host", "device", "both"), default="host",
                   help="where the half that is not trained lives (the trainer: host); both: each way in turn")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "ADAPTER,CHECKPOINTING,PLACE": one configuration
    args = p.parse_args()
    halves = trained_halves(args.half)
    masks = ("bool", "float") if args.masks == "both" else (args.masks,)
    if args.child is not None:
        adapter, ckpt, where = args.child.split(",")
        print(json.dumps(run(args, halves[0], adapter, ckpt == "1", where)), flush=True)
        return
    for half in halves:  # one process per configuration, so peak memory is its own
        for m in masks:
            for adapter in ("none", "lora") if args.adapter == "lora" else ("none",):
                for ckpt in ("0", "1") if args.activation_checkpointing else ("0",):
                    for where in ("device", "host") if args.untrained_half == "both" else (args.untrained_half,):
                        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--half", half, "--masks", m,
                                        "--child", f"{adapter},{ckpt},{where}"], check=True)

if __name__ == "__main__":
    main()
