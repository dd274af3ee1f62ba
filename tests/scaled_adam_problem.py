"""A small, fixed training problem for pinning ScaledAdam + Eden to icefall's implementation.

`run()` drives any optimizer/scheduler pair with icefall's constructor arguments over the same
parameters, data and loop (gradient accumulation, epochs, gradient spikes that must be clipped).
tests/test_optim.py runs it with ours; the reference numbers in tests/data/icefall_scaled_adam.json
were recorded by running it with icefall's classes (see tests/data/SOURCES.md):

    python tests/scaled_adam_problem.py PATH/TO/icefall/egs/librispeech/ASR/zipformer/optim.py OUT.json
"""

from __future__ import annotations

import importlib.util
import json
import sys

import torch

STEPS, STEPS_PER_EPOCH = 200, 50
RECORDED_STEPS = (1, 11, 41, 91, 101, 200)
# (accum_grad, betas, clipping_update_period): beta2 0.95 drops the bias correction from step 90 on
RUNS = ((1, (0.9, 0.95), 100), (4, (0.9, 0.95), 100), (1, (0.9, 0.98), 20))
SCHEDULE = {"lr_batches": 100, "lr_epochs": 2, "warmup_batches": 50, "warmup_start": 0.5}
SHAPES = {"w1": (8, 6), "b1": (8,), "w2": (8, 8), "b2": (8,), "w3": (3, 8), "b3": (3,), "gain": (), "scale": (1,)}


def initial_params() -> dict[str, list[float]]:
    g = torch.Generator().manual_seed(0)
    init = {name: (torch.randn(shape, generator=g) * (0.5 if len(shape) == 2 else 0.1))
            for name, shape in SHAPES.items()}
    init["gain"], init["scale"] = torch.tensor(0.5), torch.ones(1)
    return {name: [float(f"{v:.9g}") for v in t.reshape(-1).tolist()] for name, t in init.items()}  # exact


def forward(p: dict, x: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(x @ p["w1"].T + p["b1"])  # (16, 8)
    h = torch.tanh(h @ p["w2"].T + p["b2"]) * p["scale"]  # (16, 8)
    return (h @ p["w3"].T + p["b3"]) * p["gain"]  # (16, 3)


def micro_batch(step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    g = torch.Generator().manual_seed(1000 * step + micro)
    x = torch.randn(16, 6, generator=g)
    y = torch.sin(x[:, :3] * 2) + 0.1 * torch.randn(16, 3, generator=g)
    return x, y, 20.0 if step % 23 == 22 else 1.0  # every 23rd step a gradient spike that clipping must catch


def run(optimizer_cls, scheduler_cls, init: dict, accum_grad: int, betas, clipping_update_period: int) -> dict:
    """-> {"lr": lr of every step, "params": {step: {name: values}} at RECORDED_STEPS}."""
    p = {name: torch.nn.Parameter(torch.tensor(init[name]).reshape(SHAPES[name])) for name in SHAPES}
    opt = optimizer_cls(list(p.items()), lr=0.05, clipping_scale=2.0, betas=betas,
                        clipping_update_period=clipping_update_period)
    sched = scheduler_cls(opt, **SCHEDULE)
    lrs, params, step = [], {}, 0
    for epoch in range(STEPS // STEPS_PER_EPOCH):
        sched.step_epoch(epoch)
        for _ in range(STEPS_PER_EPOCH):
            lrs.append(opt.param_groups[0]["lr"])
            for micro in range(accum_grad):
                x, y, spike = micro_batch(step, micro)
                (spike * ((forward(p, x) - y) ** 2).mean() / accum_grad).backward()
            opt.step()
            opt.zero_grad()
            step += 1
            sched.step_batch()
            if step in RECORDED_STEPS:
                params[str(step)] = {name: t.detach().reshape(-1).tolist() for name, t in p.items()}
    return {"lr": lrs, "params": params}


def _record(icefall_optim: str, out: str) -> None:
    spec = importlib.util.spec_from_file_location("icefall_optim", icefall_optim)
    icefall = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(icefall)
    torch.set_num_threads(1)
    init = initial_params()
    runs = []
    for accum_grad, betas, period in RUNS:
        result = run(icefall.ScaledAdam, icefall.Eden, init, accum_grad, betas, period)
        runs.append({"accum_grad": accum_grad, "betas": list(betas), "clipping_update_period": period, **result})
    for r in runs:  # float32 parameters: 9 significant digits are exact; lrs to 12
        r["lr"] = [float(f"{lr:.12g}") for lr in r["lr"]]
        r["params"] = {s: {n: [float(f"{v:.9g}") for v in vs] for n, vs in ps.items()} for s, ps in r["params"].items()}
    with open(out, "w") as f:
        json.dump({"init": init, "runs": runs}, f, separators=(",", ":"))


if __name__ == "__main__":
    _record(*sys.argv[1:3])
