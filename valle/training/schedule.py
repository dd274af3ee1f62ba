"""Eden, the learning-rate schedule of icefall's ScaledAdam recipes (egs/librispeech/ASR/zipformer/optim.py),
re-implemented: ``lr = base_lr * ((step^2 + B^2) / B^2)^-0.25 * ((epoch^2 + E^2) / E^2)^-0.25 * warmup``, with
``warmup`` rising linearly from ``warmup_start`` to 1 over ``warmup_batches`` steps. Counts are optimizer steps."""

from __future__ import annotations

import torch


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class Eden:
    """Eden learning-rate schedule for any optimizer whose param groups have ``lr``.

    ``lr = base_lr * ((batch^2 + B^2) / B^2)^-0.25 * ((epoch^2 + E^2) / E^2)^-0.25 * warmup``, where
    ``batch`` counts optimizer steps, ``epoch`` counts finished epochs (0 during the first) and
    ``warmup`` rises linearly from ``warmup_start`` at step 0 to 1 at ``warmup_batches`` steps.
    Base lrs are the groups' ``initial_lr`` (set from ``lr`` when absent).  The lrs are set at
    construction, then on every ``step_batch`` / ``step_epoch``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr_batches: float = 5000, lr_epochs: float = 4,
                 warmup_batches: float = 200, warmup_start: float = 0.5):
        check(lr_batches > 0, f"Eden: lr_batches must be > 0, got {lr_batches}")
        check(lr_epochs > 0, f"Eden: lr_epochs must be > 0, got {lr_epochs}")
        check(warmup_batches >= 0, f"Eden: warmup_batches must be >= 0, got {warmup_batches}")
        check(0.0 <= warmup_start <= 1.0, f"Eden: warmup_start must be in [0, 1], got {warmup_start}")
        self.optimizer = optimizer
        self.lr_batches, self.lr_epochs = lr_batches, lr_epochs
        self.warmup_batches, self.warmup_start = warmup_batches, warmup_start
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.batch = 0
        self.epoch = 0
        self._set_lrs()

    def factor(self) -> float:
        """The multiplier on the base lrs at the current (batch, epoch)."""
        b, e = self.batch, self.epoch
        decay = ((b ** 2 + self.lr_batches ** 2) / self.lr_batches ** 2) ** -0.25 \
            * ((e ** 2 + self.lr_epochs ** 2) / self.lr_epochs ** 2) ** -0.25
        if b >= self.warmup_batches:
            return decay
        return decay * (self.warmup_start + (1.0 - self.warmup_start) * b / self.warmup_batches)

    def step_batch(self, batch: int | None = None) -> None:
        """Set the optimizer-step count (or add one) and update the lrs; call after each optimizer step."""
        self.batch = self.batch + 1 if batch is None else batch
        self._set_lrs()

    def step_epoch(self, epoch: int | None = None) -> None:
        """Set the number of finished epochs (or add one) and update the lrs."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self._set_lrs()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), "batch": self.batch, "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore counters and base lrs (the schedule's hyperparameters stay as constructed)."""
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"Eden.load_state_dict: saved schedule has {len(state_dict['base_lrs'])} param "
                            f"groups, the optimizer has {len(self.optimizer.param_groups)}")
        self.base_lrs = list(state_dict["base_lrs"])
        self.batch, self.epoch = state_dict["batch"], state_dict["epoch"]
        self._set_lrs()

    def _set_lrs(self) -> None:
        f = self.factor()
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * f
