"""ScaledAdam optimizer, Eden learning-rate schedule and the builders the trainer uses.

The algorithms follow icefall's ScaledAdam/Eden (as used by VALL-E recipes), re-implemented
per tensor (no batching of same-shaped tensors):

* ScaledAdam: Adam second moments, but each non-scalar tensor's update is multiplied by the
  tensor's RMS (at least ``param_min_rms``), so every tensor changes by about ``lr``
  *relative* to its size.  The tensor's overall scale is learned separately (Adam-like stats on
  the gradient w.r.t. a log-scale, applied every ``size_update_period`` steps) and may not grow
  past ``param_max_rms``.  Scalars get plain Adam with ``lr * scalar_lr_scale``, clamped to
  ``[-scalar_max, scalar_max]``.  Momentum is applied to the combined update.  Gradients are
  clipped to ``clipping_scale`` times the median of recent (RMS-weighted) gradient norms.
* Eden: ``lr = base_lr * ((step^2 + B^2) / B^2)^-0.25 * ((epoch^2 + E^2) / E^2)^-0.25 * warmup``
  with ``warmup`` rising linearly from ``warmup_start`` to 1 over ``warmup_batches`` steps.

All counts are optimizer steps (after gradient accumulation), never micro-batches.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Iterable, Sequence

import torch
from torch import Tensor

from valle.errors import UserError

log = logging.getLogger(__name__)

OPTIMIZERS = ("scaled_adam", "adamw")
DEFAULT_LR = {"scaled_adam": 0.05, "adamw": 1e-4}
# Early steps at which the clipping threshold is estimated before the first full period.
_EARLY_ESTIMATES = (10, 20, 40)
# Clipping by a factor below this logs which tensor dominates the gradient norm.
_REPORT_FACTOR = 0.5


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _rms(x: Tensor) -> Tensor:
    """Root-mean-square of all elements, as a 0-dim tensor."""
    return torch.linalg.vector_norm(x) / math.sqrt(x.numel())


class ScaledAdam(torch.optim.Optimizer):
    """Adam with updates proportional to each tensor's RMS and a learned per-tensor scale.

    ``params`` may be plain tensors, ``(name, tensor)`` pairs (names appear in the clipping
    diagnostics) or param-group dicts holding either.  ``parameters_names`` (one list of names
    per group) is an alternative way to give names.

    After each ``step()``: ``last_grad_norm`` is the RMS-weighted gradient norm (each non-scalar
    tensor's gradient times its RMS, scalars' times ``scalar_lr_scale``) before clipping, and
    ``last_clip_factor`` the factor the gradients were scaled by (1.0 when not clipped).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.98),
        scalar_lr_scale: float = 0.1,
        eps: float = 1e-8,
        param_min_rms: float = 1e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_scale: float | None = 2.0,
        clipping_update_period: int = 100,
        parameters_names: Sequence[Sequence[str]] | None = None,
    ):
        _check(lr >= 0, f"ScaledAdam: lr must be >= 0, got {lr}")
        _check(0 <= betas[0] < 1 and 0 <= betas[1] < 1, f"ScaledAdam: betas must be in [0, 1), got {betas}")
        _check(0 < param_min_rms < param_max_rms, f"ScaledAdam: need 0 < param_min_rms < param_max_rms, "
               f"got {param_min_rms} and {param_max_rms}")
        _check(size_update_period >= 1,
               f"ScaledAdam: size_update_period must be >= 1, got {size_update_period}")
        _check(clipping_scale is None or clipping_scale > 0,
               f"ScaledAdam: clipping_scale must be > 0 (or None to disable clipping), got {clipping_scale}")
        _check(clipping_update_period >= 1,
               f"ScaledAdam: clipping_update_period must be >= 1, got {clipping_update_period}")
        defaults = dict(lr=lr, betas=tuple(betas), scalar_lr_scale=scalar_lr_scale, eps=eps,
                        param_min_rms=param_min_rms, param_max_rms=param_max_rms, scalar_max=scalar_max,
                        size_update_period=size_update_period)
        super().__init__(params, defaults)
        if parameters_names is not None:
            _check(len(parameters_names) == len(self.param_groups),
                   f"ScaledAdam: parameters_names has {len(parameters_names)} lists for "
                   f"{len(self.param_groups)} param groups")
            for group, names in zip(self.param_groups, parameters_names):
                _check(len(names) == len(group["params"]),
                       f"ScaledAdam: {len(names)} names for a group of {len(group['params'])} parameters")
                group["param_names"] = list(names)
        self.clipping_scale = clipping_scale
        self.clipping_update_period = clipping_update_period
        # Optimizer-wide clipping state (saved in state_dict()["clipping"]).
        self._clip = {"step": 0, "norms": [], "threshold": None, "num_clipped": 0, "num_seen": 0}
        self.last_grad_norm: float | None = None
        self.last_clip_factor = 1.0

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["clipping"] = copy.deepcopy(self._clip)
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        clip = state_dict.pop("clipping", None)
        if clip is None:
            raise UserError("ScaledAdam.load_state_dict: the optimizer state has no 'clipping' entry; "
                            "it was not saved by ScaledAdam (was that run trained with AdamW?)")
        super().load_state_dict(state_dict)
        self._clip = copy.deepcopy(clip)

    def _param_name(self, group_index: int, index: int) -> str:
        names = self.param_groups[group_index].get("param_names")
        return names[index] if names else f"param_groups[{group_index}].params[{index}]"

    # ------------------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        entries = [(gi, i, group, p) for gi, group in enumerate(self.param_groups)
                   for i, p in enumerate(group["params"]) if p.grad is not None]
        if not entries:
            return loss
        for _, _, group, p in entries:
            if p.grad.is_sparse:
                raise RuntimeError("ScaledAdam does not support sparse gradients")
            if not self.state[p]:
                self._init_state(group, p, self.state[p])
        factor = self._clip_factor(entries)
        if factor == 0.0:
            return loss
        for _, _, group, p in entries:
            self._update(group, p, self.state[p], p.grad if factor == 1.0 else p.grad * factor)
        self._clip["step"] += 1
        return loss

    @staticmethod
    def _init_state(group: dict, p: Tensor, state: dict) -> None:
        state["step"] = 0
        state["delta"] = torch.zeros_like(p)  # momentum of the combined update
        state["exp_avg_sq"] = torch.zeros_like(p)
        if p.numel() > 1:
            state["param_rms"] = _rms(p)  # () refreshed every size_update_period steps
            state["scale_exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
            state["scale_grads"] = torch.zeros(group["size_update_period"], dtype=p.dtype, device=p.device)

    def _update(self, group: dict, p: Tensor, state: dict, grad: Tensor) -> None:
        step = state["step"]
        beta1, beta2 = group["betas"]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # Adam's grad / (sqrt(exp_avg_sq / bc) + eps), computed as c * grad / (sqrt(exp_avg_sq) + c * eps)
        c = (1 - beta2 ** (step + 1)) ** 0.5
        denom = exp_avg_sq.sqrt().add_(group["eps"] * c)
        delta = state["delta"].mul_(beta1)  # momentum over the combined update
        if p.numel() == 1:  # scalar: plain Adam with a smaller lr, clamped
            delta.addcdiv_(grad, denom, value=-group["lr"] * group["scalar_lr_scale"] * (1 - beta1) * c)
            p.add_(delta).clamp_(-group["scalar_max"], group["scalar_max"])
        else:
            period = group["size_update_period"]
            state["scale_grads"][step % period] = torch.dot(p.reshape(-1), grad.reshape(-1))  # dL/dlog(scale)
            size_step_now = step % period == period - 1
            if size_step_now:
                state["param_rms"].copy_(_rms(p))
            denom.div_(state["param_rms"].clamp(min=group["param_min_rms"]))  # update scaled by param rms
            delta.addcdiv_(grad, denom, value=-group["lr"] * (1 - beta1) * c)
            if size_step_now and step > 0:
                delta.add_(p * (self._scale_step(group, state, step) * (1 - beta1)))
            p.add_(delta)
        state["step"] = step + 1

    @staticmethod
    def _scale_step(group: dict, state: dict, step: int) -> Tensor:
        """Relative change of the tensor's scale (Adam on its log-scale), a 0-dim tensor."""
        period = group["size_update_period"]
        beta2 = group["betas"][1] ** period  # one scale update per period: faster decay
        scale_grads, avg_sq, rms = state["scale_grads"], state["scale_exp_avg_sq"], state["param_rms"]
        avg_sq.mul_(beta2).add_(scale_grads.pow(2).mean(), alpha=1 - beta2)
        bias_correction = 1 - beta2 ** ((step + 1) // period)
        size_lr = group["lr"] * group["scalar_lr_scale"]
        scale_step = -size_lr * scale_grads.sum() / ((avg_sq / bias_correction).sqrt() + group["eps"])
        # too small: never shrink further; and never more than 10% per update
        scale_step = torch.where(rms < group["param_min_rms"], scale_step.clamp(min=0.0), scale_step)
        scale_step = scale_step.clamp(-0.1, 0.1)
        return torch.minimum(scale_step, (group["param_max_rms"] - rms) / rms)  # never above max rms

    # -------------------------------------------------------------------------- clipping

    def _clip_factor(self, entries: list) -> float:
        """Record the gradient norm; return the factor (<= 1) to scale gradients by, 0.0 to skip the step."""
        sumsq = torch.stack([self._weighted_sumsq(group, p) for _, _, group, p in entries])  # (N,)
        norm = sumsq.sum().sqrt().item()
        self.last_grad_norm = norm
        self.last_clip_factor = 1.0
        if not math.isfinite(norm):
            log.warning("ScaledAdam: gradient norm is %s at step %d; skipping this update",
                        norm, self._clip["step"])
            self.last_clip_factor = 0.0
            return 0.0
        if self.clipping_scale is None:
            return 1.0
        clip = self._clip
        clip["norms"] = (clip["norms"] + [norm])[-self.clipping_update_period:]
        clip["num_seen"] += 1
        step = clip["step"]
        early = step in _EARLY_ESTIMATES and step < self.clipping_update_period
        if early or (step > 0 and step % self.clipping_update_period == 0):
            self._update_threshold(early)
        if clip["threshold"] is None or norm <= clip["threshold"]:
            return 1.0
        factor = clip["threshold"] / norm
        clip["num_clipped"] += 1
        self.last_clip_factor = factor
        if factor < _REPORT_FACTOR:
            log.warning("ScaledAdam: gradient norm %.3e is over the clipping threshold %.3e at step %d, "
                        "scaling gradients by %.3g; %s", norm, clip["threshold"], step, factor,
                        self._dominant(entries, sumsq))
        return factor

    def _weighted_sumsq(self, group: dict, p: Tensor) -> Tensor:
        """Squared norm of the gradient scaled like the update: by the tensor's RMS (scalars: lr scale)."""
        weight = group["scalar_lr_scale"] if p.numel() == 1 else self.state[p]["param_rms"]
        return (torch.linalg.vector_norm(p.grad) * weight).square()

    def _update_threshold(self, early: bool) -> None:
        clip = self._clip
        norms = sorted(clip["norms"])
        n = len(norms)
        quartiles = [norms[(k * (n - 1) + 2) // 4] for k in range(5)]  # min, q1, median, q3, max
        threshold = self.clipping_scale * quartiles[2] * (2.0 if early else 1.0)
        log.info("ScaledAdam: step %d, grad-norm quartiles %s, threshold=%.3e, clipped %.1f%% of the last "
                 "%d steps", clip["step"], " ".join(f"{q:.3e}" for q in quartiles), threshold,
                 100.0 * clip["num_clipped"] / max(clip["num_seen"], 1), clip["num_seen"])
        clip.update(threshold=threshold, num_clipped=0, num_seen=0)

    def _dominant(self, entries: list, sumsq: Tensor) -> str:
        """Describe the tensors with the largest share of the squared gradient norm."""
        shares = (sumsq / sumsq.sum()).tolist()
        order = sorted(range(len(entries)), key=lambda k: -shares[k])[:3]
        parts = [f"{self._param_name(entries[k][0], entries[k][1])} ({100 * shares[k]:.1f}%)" for k in order]
        return "tensors dominating the gradient norm: " + ", ".join(parts)


class ClippedAdamW(torch.optim.AdamW):
    """torch AdamW that clips the total gradient norm to ``max_grad_norm`` (None: no clipping) and
    exposes ``last_grad_norm`` / ``last_clip_factor`` like ScaledAdam."""

    def __init__(self, params: Iterable, max_grad_norm: float | None = 1.0, **kwargs):
        _check(max_grad_norm is None or max_grad_norm > 0,
               f"AdamW: max_grad_norm must be > 0 (or None), got {max_grad_norm}")
        super().__init__(params, **kwargs)
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm: float | None = None
        self.last_clip_factor = 1.0

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        limit = math.inf if self.max_grad_norm is None else self.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(params, limit).item() if params else 0.0
        self.last_grad_norm = norm
        if not math.isfinite(norm):
            log.warning("AdamW: gradient norm is %s; skipping this update", norm)
            self.last_clip_factor = 0.0
            return loss
        self.last_clip_factor = min(1.0, limit / norm) if norm > 0 else 1.0
        super().step()
        return loss


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
        _check(lr_batches > 0, f"Eden: lr_batches must be > 0, got {lr_batches}")
        _check(lr_epochs > 0, f"Eden: lr_epochs must be > 0, got {lr_epochs}")
        _check(warmup_batches >= 0, f"Eden: warmup_batches must be >= 0, got {warmup_batches}")
        _check(0.0 <= warmup_start <= 1.0, f"Eden: warmup_start must be in [0, 1], got {warmup_start}")
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
            raise UserError(f"Eden.load_state_dict: saved schedule has {len(state_dict['base_lrs'])} param "
                            f"groups, the optimizer has {len(self.optimizer.param_groups)}")
        self.base_lrs = list(state_dict["base_lrs"])
        self.batch, self.epoch = state_dict["batch"], state_dict["epoch"]
        self._set_lrs()

    def _set_lrs(self) -> None:
        f = self.factor()
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * f


def build_optimizer(named_params: Iterable[tuple[str, Tensor]], name: str = "scaled_adam",
                    lr: float | None = None, weight_decay: float = 0.01,
                    betas: tuple[float, float] = (0.9, 0.95), clipping_scale: float | None = 2.0,
                    clipping_update_period: int = 100, max_grad_norm: float | None = 1.0,
                    ) -> torch.optim.Optimizer:
    """Optimizer over the ``requires_grad`` parameters of ``named_params``.

    ``scaled_adam``: ScaledAdam (lr default 0.05; ``weight_decay`` and ``max_grad_norm`` unused,
    clipping is relative: ``clipping_scale`` x median of recent norms).  ``adamw``: ClippedAdamW
    (lr default 1e-4) with ``weight_decay`` on tensors of 2+ dims only, gradients clipped to
    ``max_grad_norm``.
    """
    _check(name in OPTIMIZERS, f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    named = [(n, p) for n, p in named_params if p.requires_grad]
    _check(bool(named), "no trainable parameters to optimize (check --model-name and --trainable)")
    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "scaled_adam":
        return ScaledAdam(named, lr=lr, betas=betas, clipping_scale=clipping_scale,
                          clipping_update_period=clipping_update_period)
    decay = [(n, p) for n, p in named if p.ndim >= 2]
    no_decay = [(n, p) for n, p in named if p.ndim < 2]
    groups = [{"params": g, "weight_decay": wd} for g, wd in ((decay, weight_decay), (no_decay, 0.0)) if g]
    return ClippedAdamW(groups, max_grad_norm=max_grad_norm, lr=lr, betas=betas)


def build_scheduler(optimizer: torch.optim.Optimizer, lr_batches: float = 5000, lr_epochs: float = 4,
                    warmup_batches: float = 200, warmup_start: float = 0.5) -> Eden:
    """Eden schedule (VALL-E defaults: B=5000 steps, E=4 epochs, 200 warmup steps from 0.5)."""
    return Eden(optimizer, lr_batches=lr_batches, lr_epochs=lr_epochs,
                warmup_batches=warmup_batches, warmup_start=warmup_start)
