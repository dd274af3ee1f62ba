"""What a run trains: its halves, which weights get gradients, and the loss that DDP wraps."""

from __future__ import annotations

import re

import torch

from valle.errors import UserError
from valle.models.adapters import LoRA
from valle.models.valle import VALLE


def trained_halves(model_name: str) -> tuple[str, ...]:
    """--model-name ar | nar | both -> the halves trained."""
    return ("ar", "nar") if model_name == "both" else (model_name,)


class Objective(torch.nn.Module):
    """What DDP wraps: the loss of the half (or halves) being trained."""

    def __init__(self, model: VALLE, model_name: str, adapters: LoRA | None = None):
        super().__init__()
        self.model, self.halves = model, trained_halves(model_name)
        self.adapters = adapters  # a submodule: DDP and train()/eval() reach the adapter parameters

    def forward(self, batch: dict) -> dict:
        outs = [self.model(batch, half=half) for half in self.halves]
        loss = sum(o["loss"] for o in outs)
        acc = sum(o["top10_acc"] for o in outs) / len(outs)
        return {"loss": loss, "top10_acc": acc, "num_frames": outs[0]["num_frames"]}


def select_trainable(model: VALLE, model_name: str, patterns: tuple,
                     adapters: LoRA | None = None) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze everything except the chosen half, narrowed by regexes (re.match on names). With adapters: the
    adapters, plus the base tensors of the half that the regexes name (none without --trainable)."""
    chosen = {name: p for half in trained_halves(model_name) for name, p in model.half_named_parameters(half)}
    if patterns or adapters is not None:
        chosen = {n: p for n, p in chosen.items() if any(re.match(pat, n) for pat in patterns)}
        if patterns and not chosen:
            raise UserError(f"--trainable {' '.join(patterns)} matches no parameter of the {model_name} half")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in chosen.values():
        p.requires_grad_(True)
    if adapters is not None:
        chosen.update(adapters.named_adapter_parameters())
    return sorted(chosen.items())
