"""Building the model a checkpoint was trained with: uninitialized (the checkpoint overwrites every weight), ties
restored, loaded strictly. `load_model` is what the CLIs, the trainer and the app call.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from valle.config import ModelConfig
from valle.errors import UserError
from valle.models.checkpoint.formats import LoadedCheckpoint, load_checkpoint
from valle.models.checkpoint.hub import resolve_checkpoint
from valle.models.checkpoint.layout import load_state_dict_strict, tie_groups
from valle.models.valle import VALLE


def _empty_model(config: ModelConfig, device: str | torch.device) -> torch.nn.Module:
    """VALLE(config) with uninitialized weights (a checkpoint overwrites them all): random init of the
    full-size model takes seconds. Falls back to a normal build if the model has state outside its state_dict."""
    with torch.device("meta"):
        model = VALLE(config)
    if set(dict(model.named_buffers())) - set(model.state_dict()):
        with torch.device(device):
            return VALLE(config)
    ties = tie_groups(model)
    model.to_empty(device=device)  # gives each tied name its own tensor: tie them again
    for first, *aliases in ties:
        for alias in aliases:
            owner, _, attr = alias.rpartition(".")
            setattr(model.get_submodule(owner), attr, model.get_parameter(first))
    return model


def load_model(path_or_name: str | os.PathLike, nhead: int | None = None, device: str | torch.device = "cpu",
               flag: str = "--checkpoint", **overrides) -> tuple[torch.nn.Module, LoadedCheckpoint]:
    """Build the VALLE a checkpoint was trained with (config fields in `overrides` win, e.g.
    share_embedding=False to untie for fine-tuning), load it strictly, return it in eval mode.
    The returned LoadedCheckpoint's state_dict is the model's own, so the file's copy can be freed.
    `flag` is the option that named the file, for the messages."""
    path = resolve_checkpoint(path_or_name, flag=flag)
    loaded = load_checkpoint(path, nhead=nhead)
    try:
        config = dataclasses.replace(loaded.config, **overrides)
    except TypeError as e:
        raise UserError(f"unknown model setting in {sorted(overrides)}: {e}") from None
    model = _empty_model(config, device)
    load_state_dict_strict(model, loaded.state_dict, source=str(path))
    model.eval()
    return model, dataclasses.replace(loaded, config=config, state_dict=model.state_dict())
