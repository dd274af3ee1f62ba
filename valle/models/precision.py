"""The precision a model speaks in: fp32, bf16, fp16 (casts), or int8 (weight-only int8 for every linear).

int8 keeps one int8 weight per element and one float32 scale per output channel (symmetric, round to nearest) for
every linear of both halves: the packed attention in-projection (q, k, v in `self_attn.in_proj_weight`), the
out-projection, the feed-forward layers, the NAR's adaptive-norm projections and the predict layers. Embeddings,
norms and activations stay in float32. How a linear runs depends on how many positions each sequence brings:

- one (an AR step, at any batch size; the predict layers' (B, D) inputs): `torch._weight_int8pack_mm`, which reads
  the int8 weight directly (a quarter of the float32 bytes: a step is memory-bound), on the activations rounded to
  bfloat16;
- more (the prompt pass, the NAR): the weight widened to float32 for one matmul (compute-bound: float32 GEMM is the
  fastest kernel there), so these differ from fp32 only by the weights' rounding.

The choice depends on the shape of one sequence, never on the batch: greedy codes are the same whether requests
run together or one by one.

docs/benchmarks.md has what else was tried (torchao, torch's dynamic int8) and what each measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from valle.errors import UserError
from valle.models.layers import SelfAttention

# precision -> the dtype of the activations (and of the weights that are not int8)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


def check_precision(name: str, device: torch.device | str) -> torch.dtype:
    """The activations' dtype of precision `name`; a UserError for an unknown name or int8 off the CPU."""
    if name not in PRECISIONS:
        raise UserError(f"--precision {name}: use one of {', '.join(PRECISIONS)}")
    if name == "int8" and not str(device).startswith("cpu"):
        raise UserError(f"--precision int8 runs on the CPU (the model is on {device}); on a GPU use bf16 or fp16")
    return PRECISIONS[name]


def apply_precision(model: nn.Module, name: str) -> nn.Module:
    """`model` in precision `name` (in place): cast to its dtype, or every linear made int8 (adapters already
    merged: an int8 weight cannot take a merge)."""
    dtype = check_precision(name, next(model.parameters()).device)
    if name == "int8":
        quantize_int8(model)
    return model.to(dtype)


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """weight (out, in) -> int8 (out, in) and scale (out,) float32, per output channel: weight ~ int8 * scale."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,)
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def int8_linear(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    """F.linear(x, weight * scale[:, None], bias) for x (..., in) float32, weight (out, in) int8 -> (..., out).
    x (B, in) or (B, 1, in): one position per sequence; (B, T, in): T positions."""
    rows = x.reshape(-1, x.shape[-1])  # (N, in)
    if x.dim() == 2 or x.shape[-2] == 1:
        ones = torch.ones(weight.shape[0], dtype=torch.bfloat16)  # the kernel's scales must be bf16: scale below
        y = torch._weight_int8pack_mm(rows.to(torch.bfloat16).contiguous(), weight, ones).float()  # (N, out)
    else:
        y = F.linear(rows, weight.float())  # (N, out)
    y = y * scale if bias is None else torch.addcmul(bias, y, scale)
    return y.view(*x.shape[:-1], weight.shape[0])


class Int8Linear(nn.Module):
    """An nn.Linear with int8 weights (out, in) and a float32 scale per output channel."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scale = quantize_weight(linear.weight)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        return int8_linear(x, self.weight, self.scale, self.bias)


class Int8InProjection(nn.Module):
    """The packed in-projection (valle.models.layers.PackedInProjection) of an attention whose `in_proj_weight`
    is int8: it holds the scale per output row (3D,)."""

    def __init__(self, scale: Tensor):
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return int8_linear(x, weight, self.scale, bias)  # (B, T, 3D)


@torch.no_grad()
def quantize_int8(model: nn.Module) -> int:
    """Every nn.Linear of `model` -> Int8Linear, every SelfAttention's packed in-projection -> int8; returns how
    many weights were quantised. The float32 weights are freed (a weight tied to an embedding stays there)."""
    count = 0
    for module in list(model.modules()):
        if isinstance(module, SelfAttention):
            weight, scale = quantize_weight(module.in_proj_weight)
            bias = module.in_proj_bias.detach().float()
            del module.in_proj_weight, module.in_proj_bias
            module.register_buffer("in_proj_weight", weight)  # (3D, D) int8
            module.register_buffer("in_proj_bias", bias)
            module.in_proj = Int8InProjection(scale)
            count += 1
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child))
                count += 1
    return count
