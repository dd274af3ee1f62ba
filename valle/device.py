"""Where computation runs: the --device and --dtype flags (auto, cpu, cuda, ...) -> a torch device and dtype."""

from __future__ import annotations

import contextlib

import torch

from valle.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # --dtype NAME


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def device_type(name: str) -> str:
    """--device auto|cpu|cuda -> "cpu" or "cuda"."""
    name = resolve_device(name)  # auto -> cuda when a GPU is visible, else cpu
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: use auto, cpu or cuda (torchrun picks the GPU of each rank)")
    return name


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """--dtype auto -> bfloat16 on a GPU that supports it, else float32; the names of DTYPES as they say."""
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if name not in DTYPES:
        raise UserError(f"--dtype {name}: use one of {', '.join(DTYPES)} or auto")
    return DTYPES[name]


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op threads set to `count` inside the block (and back after): float results depend on the
    thread count, so work whose output must not depend on how it was split runs with a fixed one."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
