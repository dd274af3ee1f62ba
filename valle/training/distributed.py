"""torchrun / DDP plumbing for training: the process group, and collectives that are no-ops on a single process
(who this process is: valle.ranks)."""

from __future__ import annotations

import datetime

import torch
import torch.distributed as dist

from valle.errors import UserError
from valle.ranks import DistInfo, dist_env


def setup_distributed(kind: str, timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): nccl when `kind` is "cuda", else gloo.
    A collective that waits longer than `timeout_minutes` for another rank fails (`lost_rank_error` says so)."""
    info = dist_env()
    if info.world_size == 1:
        return info
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return info


# How the backends word a peer that died (its connection closed) or stopped answering (a timeout)
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Timed out", "timed out", "NCCL", "Gloo", "gloo")


def lost_rank_error(error: BaseException, info: DistInfo, log_dir) -> UserError | None:
    """One line for a collective that failed because another rank (or node) died or stopped answering, so that
    every surviving rank stops with a message instead of a traceback or a hang; None for any other error."""
    if not dist.is_initialized():
        return None
    if not (isinstance(error, dist.DistError) or any(k in str(error) for k in _LOST_PEER)):
        return None
    what = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return UserError(f"rank {info.rank} of {info.world_size}: another rank died or stopped answering ({what}); "
                     f"its own error is in {log_dir}/train-rank*.log on its machine. Rerun with --resume true")


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
