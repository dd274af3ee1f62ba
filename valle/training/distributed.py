"""torchrun / DDP plumbing: who am I, and collectives that are no-ops on a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistInfo:
    """Who this process is, as torchrun says (RANK, LOCAL_RANK, WORLD_SIZE); one process without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)


def setup_distributed(device_type: str) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); nccl on CUDA, gloo on CPU."""
    info = dist_env()
    if info.world_size == 1:
        return info
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True only if `flag` is true on every rank. Ranks that run out of batches early, or hit a
    NaN loss, make every rank stop or skip together instead of leaving the others waiting forever."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)  # nccl needs it on the GPU
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few floats over ranks (validation totals)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
