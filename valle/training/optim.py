"""ScaledAdam, AdamW with clipping, and the builders of the optimizer and the schedule (schedule.py) the trainer uses.

ScaledAdam and Eden are icefall's (egs/librispeech/ASR/zipformer/optim.py), re-implemented per tensor;
tests/test_optim.py holds our trajectories to ones recorded with icefall's code, step for step. What the
update, the clipping and the schedule do, and where they differ from icefall and the VALL-E forks:
docs/training.md, "Optimizer: ScaledAdam and Eden". All counts are optimizer steps, never micro-batches.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from valle.config import DEFAULT_LR, OptimConfig
from valle.errors import UserError
from valle.training.schedule import Eden, check

log = logging.getLogger(__name__)

BETAS = (0.9, 0.95)  # VALL-E's (ScaledAdam and AdamW)
MAX_GRAD_NORM = 1.0  # AdamW's gradient clipping
# Early steps at which the clipping threshold is estimated before the first full period.
_EARLY_ESTIMATES = (10, 20, 40)
# Clipping by a factor below this logs which tensor dominates the gradient norm.
_REPORT_FACTOR = 0.5


def _rms(x: Tensor) -> Tensor:
    """Root-mean-square of all elements, as a 0-dim float32 tensor."""
    return x.float().pow(2).mean().sqrt()


class ScaledAdam(torch.optim.Optimizer):
    """Adam with updates proportional to each tensor's RMS and a learned per-tensor scale.

    ``params`` may be plain tensors, ``(name, tensor)`` pairs (names appear in the clipping
    diagnostics) or param-group dicts holding either.  ``parameters_names`` (one list of names
    per group) is an alternative way to give names.  As in icefall, every parameter of the
    optimizer takes a step each time: one without a gradient counts as a zero gradient (its
    momentum still moves it).  The optimizer state is float32 whatever the parameters' dtype.

    After each ``step()``: ``last_grad_norm`` is the RMS-weighted gradient norm (each non-scalar
    tensor's gradient times its RMS, scalars' times ``scalar_lr_scale``) before clipping, and
    ``last_clip_factor`` the factor the gradients were scaled by (1.0 when not clipped).
    Bad hyperparameters raise ``ValueError``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = DEFAULT_LR["scaled_adam"],
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
        check(lr >= 0, f"ScaledAdam: lr must be >= 0, got {lr}")
        check(0 <= betas[0] < 1 and 0 <= betas[1] < 1, f"ScaledAdam: betas must be in [0, 1), got {betas}")
        check(0 < param_min_rms < param_max_rms, f"ScaledAdam: need 0 < param_min_rms < param_max_rms, "
              f"got {param_min_rms} and {param_max_rms}")
        check(size_update_period >= 1,
              f"ScaledAdam: size_update_period must be >= 1, got {size_update_period}")
        check(clipping_scale is None or clipping_scale > 0,
              f"ScaledAdam: clipping_scale must be > 0 (or None to disable clipping), got {clipping_scale}")
        check(clipping_update_period >= 1,
              f"ScaledAdam: clipping_update_period must be >= 1, got {clipping_update_period}")
        defaults = dict(lr=lr, betas=tuple(betas), scalar_lr_scale=scalar_lr_scale, eps=eps,
                        param_min_rms=param_min_rms, param_max_rms=param_max_rms, scalar_max=scalar_max,
                        size_update_period=size_update_period)
        super().__init__(params, defaults)
        if parameters_names is not None:
            check(len(parameters_names) == len(self.param_groups),
                  f"ScaledAdam: parameters_names has {len(parameters_names)} lists for "
                  f"{len(self.param_groups)} param groups")
            for group, names in zip(self.param_groups, parameters_names):
                check(len(names) == len(group["params"]),
                      f"ScaledAdam: {len(names)} names for a group of {len(group['params'])} parameters")
                group["param_names"] = list(names)
        self.clipping_scale = clipping_scale
        self.clipping_update_period = clipping_update_period
        # Optimizer-wide clipping state (saved in state_dict()["clipping"]): the norms of the last
        # `clipping_update_period` steps in a ring indexed by step (slot 0 waits for step `period`:
        # the step-0 norm is never recorded), float32 as icefall keeps them.
        self._clip = {"step": 0, "norms": torch.zeros(clipping_update_period), "threshold": None,
                      "num_clipped": 0}
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
                   for i, p in enumerate(group["params"])]
        if all(p.grad is None for *_, p in entries):
            return loss
        grads = []
        for _, _, group, p in entries:
            if p.grad is not None and p.grad.is_sparse:
                raise RuntimeError("ScaledAdam does not support sparse gradients")
            if not self.state[p]:
                self._init_state(group, p, self.state[p])
            grads.append(torch.zeros_like(p) if p.grad is None else p.grad)
        factor = self._clip_factor(entries, grads)
        if factor == 0.0:
            return loss
        for (_, _, group, p), grad in zip(entries, grads):
            self._update(group, p, self.state[p], grad if factor == 1.0 else grad * factor)
        self._clip["step"] += 1
        return loss

    @staticmethod
    def _init_state(group: dict, p: Tensor, state: dict) -> None:
        f32 = dict(dtype=torch.float32, device=p.device)
        state["step"] = 0
        state["delta"] = torch.zeros(p.shape, **f32)  # momentum of the combined update
        state["exp_avg_sq"] = torch.zeros(p.shape, **f32)
        if p.numel() > 1:
            state["param_rms"] = _rms(p).float()  # () refreshed every size_update_period steps
            state["scale_exp_avg_sq"] = torch.zeros((), **f32)
            state["scale_grads"] = torch.zeros(group["size_update_period"], **f32)

    def _update(self, group: dict, p: Tensor, state: dict, grad: Tensor) -> None:
        step, lr = state["step"], group["lr"]
        beta1, beta2 = group["betas"]
        exp_avg_sq = state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # Adam's second-moment bias correction, dropped once it is within 1% of 1 (as icefall)
        bias_correction = 1 - beta2 ** (step + 1)
        if bias_correction < 0.99:
            exp_avg_sq = exp_avg_sq * (1.0 / bias_correction)
        denom = exp_avg_sq.sqrt().add_(group["eps"])
        if p.numel() == 1:  # scalar: plain Adam with a smaller lr, clamped
            delta = -(lr * group["scalar_lr_scale"]) * grad / denom
        else:
            delta = -lr * grad / denom
            period = group["size_update_period"]
            state["scale_grads"][step % period] = (p * grad).sum()  # dL/dlog(scale)
            size_step_now = step % period == period - 1
            if size_step_now:
                state["param_rms"].copy_(_rms(p))
            delta.mul_(state["param_rms"].clamp(min=group["param_min_rms"]))  # update scaled by param rms
            if size_step_now and step > 0:
                delta.add_(p * self._scale_step(group, state, step))
        momentum = state["delta"].mul_(beta1).add_(delta, alpha=1 - beta1)
        p.add_(momentum)
        if p.numel() == 1:
            p.clamp_(-group["scalar_max"], group["scalar_max"])
        state["step"] = step + 1

    @staticmethod
    def _scale_step(group: dict, state: dict, step: int) -> Tensor:
        """Relative change of the tensor's scale (Adam on its log-scale), a 0-dim tensor."""
        period = group["size_update_period"]
        beta2 = group["betas"][1] ** period  # one scale update per period: faster decay
        scale_grads, avg_sq, rms = state["scale_grads"], state["scale_exp_avg_sq"], state["param_rms"]
        avg_sq.mul_(beta2).add_((scale_grads ** 2).mean(), alpha=1 - beta2)
        bias_correction = 1 - beta2 ** ((step + 1) // period)
        size_lr = group["lr"] * group["scalar_lr_scale"]
        scale_step = -size_lr * bias_correction ** 0.5 * scale_grads.sum() / (avg_sq.sqrt() + group["eps"])
        # too small: never shrink further; and never more than 10% per update
        scale_step = scale_step.masked_fill(rms < group["param_min_rms"], 0.0).clamp(-0.1, 0.1)
        return torch.minimum(scale_step, (group["param_max_rms"] - rms) / rms)  # never above max rms

    # -------------------------------------------------------------------------- clipping

    def _clip_factor(self, entries: list, grads: list[Tensor]) -> float:
        """Record the gradient norm; return the factor (<= 1) to scale gradients by, 0.0 to skip the step."""
        sumsq = torch.stack([self._weighted_sumsq(group, p, g) for (_, _, group, p), g in zip(entries, grads)])
        norm = sumsq.sum().sqrt()  # () float32
        self.last_grad_norm = norm.item()
        self.last_clip_factor = 1.0
        if not math.isfinite(self.last_grad_norm):
            log.warning("ScaledAdam: gradient norm is %s at step %d; skipping this update",
                        self.last_grad_norm, self._clip["step"])
            self.last_clip_factor = 0.0
            return 0.0
        clip, step = self._clip, self._clip["step"]
        if self.clipping_scale is None or step == 0:  # the step-0 norm is not recorded
            return 1.0
        period = self.clipping_update_period
        clip["norms"][step % period] = norm.cpu()
        early = step in _EARLY_ESTIMATES and step < period
        if early or step % period == 0:
            self._update_threshold(step, early)
        if clip["threshold"] is None:
            return 1.0
        factor = min(1.0, (clip["threshold"] / (norm + 1e-20)).item())
        if factor < 1.0:
            clip["num_clipped"] += 1
            self.last_clip_factor = factor
        if factor < _REPORT_FACTOR:
            log.warning("ScaledAdam: gradient norm %.3e is over the clipping threshold %.3e at step %d, "
                        "scaling gradients by %.3g; %s", self.last_grad_norm, clip["threshold"], step, factor,
                        self._dominant(entries, sumsq))
        return factor

    def _weighted_sumsq(self, group: dict, p: Tensor, grad: Tensor) -> Tensor:
        """Squared norm of the gradient scaled like the update: by the tensor's RMS (scalars: lr scale)."""
        if p.numel() == 1:
            return (grad.float() ** 2).sum() * group["scalar_lr_scale"] ** 2
        return ((grad.float() * self.state[p]["param_rms"]) ** 2).sum()

    def _update_threshold(self, step: int, early: bool) -> None:
        """clipping_scale x the median norm of the last period (early estimates: of the steps so far, x 2)."""
        clip = self._clip
        norms = clip["norms"].sort().values
        if early:
            norms = norms[-step:]
        n = norms.numel()
        quartiles = [norms[min(n - 1, (n // 4) * k)].item() for k in range(5)]  # min, q1, median, q3, max
        threshold = self.clipping_scale * quartiles[2] * (2.0 if early else 1.0)
        log.info("ScaledAdam: step %d, grad-norm quartiles %s, threshold=%.3e, clipped %.1f%% of %d norms",
                 step, " ".join(f"{q:.3e}" for q in quartiles), threshold, 100.0 * clip["num_clipped"] / n, n)
        clip.update(threshold=threshold, num_clipped=0)

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
        check(max_grad_norm is None or max_grad_norm > 0,
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


def build_optimizer(named_params: Iterable[tuple[str, Tensor]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer of `cfg` over the ``requires_grad`` parameters of ``named_params``.

    ``scaled_adam``: ScaledAdam (``weight_decay`` unused; clipping is relative: ``clipping_scale`` x the median
    recent norm).  ``adamw``: ClippedAdamW with ``weight_decay`` on tensors of 2+ dims only, gradients clipped
    to MAX_GRAD_NORM.  A bad setting is a UserError naming its flag.
    """
    named = [(n, p) for n, p in named_params if p.requires_grad]
    if not named:
        raise UserError("no trainable parameters to optimize (check --model-name and --trainable)")
    lr = cfg.base_lr or DEFAULT_LR[cfg.optimizer]
    with _flag_errors():
        if cfg.optimizer == "scaled_adam":
            return ScaledAdam(named, lr=lr, betas=BETAS, clipping_scale=cfg.clipping_scale,
                              clipping_update_period=cfg.clipping_update_period)
        decay = [(n, p) for n, p in named if p.ndim >= 2]
        no_decay = [(n, p) for n, p in named if p.ndim < 2]
        groups = [{"params": g, "weight_decay": wd} for g, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)) if g]
        return ClippedAdamW(groups, max_grad_norm=MAX_GRAD_NORM, lr=lr, betas=BETAS)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> Eden:
    """The Eden schedule of `cfg` (--lr-steps, --lr-epochs, --warmup-steps, --warmup-start)."""
    with _flag_errors():
        return Eden(optimizer, lr_batches=cfg.lr_steps, lr_epochs=cfg.lr_epochs,
                    warmup_batches=cfg.warmup_steps, warmup_start=cfg.warmup_start)


# The flag that sets each hyperparameter the builders pass.
_FLAGS = {"lr": "--base-lr", "clipping_scale": "--clipping-scale", "clipping_update_period": "--clipping-update-period",
          "weight_decay": "--weight-decay", "lr_batches": "--lr-steps", "lr_epochs": "--lr-epochs",
          "warmup_batches": "--warmup-steps", "warmup_start": "--warmup-start"}


@contextlib.contextmanager
def _flag_errors():
    """A ValueError from an optimizer or schedule becomes a UserError that names the flag to change."""
    try:
        yield
    except ValueError as e:
        words = set(re.findall(r"\w+", str(e)))
        flags = [flag for name, flag in _FLAGS.items() if name in words]
        raise UserError(f"{e}: change {' or '.join(flags) or 'the optimizer flags'}") from None
