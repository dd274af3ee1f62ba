"""Who this process is among the processes of one run (torchrun's RANK, LOCAL_RANK, WORLD_SIZE) and the device of
its rank: the one reading of them, for training, the data stages and the codes command alike. Reading the rank
imports nothing heavy (a codes stage that is skipped does not import torch)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from valle.errors import UserError


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:  # noqa: F821 (imported here: reading the rank is torch-free)
        """--device `name` for this rank: auto (cuda when a GPU is visible), cpu, or cuda: each rank its own GPU
        (LOCAL_RANK) under torchrun; cuda:N names one GPU for a single process."""
        import torch

        from valle.device import device_type, resolve_device

        name = resolve_device(name)
        if not name.startswith("cuda:"):
            name = device_type(name)
        elif self.world_size > 1:
            raise UserError(f"--device {name}: under torchrun use cuda (each rank takes the GPU of its LOCAL_RANK)")
        if name == "cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} but no CUDA device is visible: use --device cpu")
        device = torch.device("cuda", self.local_rank if name == "cuda" else torch.device(name).index)
        torch.cuda.set_device(device)
        return device


def dist_env() -> DistInfo:
    """Who this process is, as torchrun says (RANK, LOCAL_RANK, WORLD_SIZE); one process without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
