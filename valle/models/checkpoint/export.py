"""Saving (every file through storage.atomic_write: a crash leaves the old file or the new one): toolkit
checkpoints of plain data only, and exports for other tools: the released layout (`{"model": state_dict}`) and
safetensors.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path, PurePath

import numpy as np
import torch

from valle.models.checkpoint.formats import FORMAT_TAG
from valle.storage import atomic_write

log = logging.getLogger(__name__)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    inner = getattr(model, "module", None)
    if not isinstance(inner, torch.nn.Module):
        inner = getattr(model, "_orig_mod", None)
    return _unwrap(inner) if isinstance(inner, torch.nn.Module) else model


_PLAIN = (str, int, float, bool, bytes, type(None), torch.Tensor, PurePath, np.generic)


def check_plain(obj: object, where: str) -> None:
    """Only what `load_checkpoint` reads back (weights_only) may be saved."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            check_plain(k, where)
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(f"{where} is a {type(obj).__name__}: a checkpoint holds plain data only "
                        "(dict, list, str, numbers, tensors, paths); convert it before saving")


def _config_dict(model: torch.nn.Module) -> dict:
    return _unwrap(model).config.to_dict()


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, tokenizer: dict | None = None,
                    train_state: dict | None = None) -> Path:
    """Write a toolkit checkpoint atomically: weights, model config, tokenizer info, training state."""
    check_plain(tokenizer, "tokenizer")
    check_plain(train_state, "train_state")
    payload = {"format": FORMAT_TAG, "model": _unwrap(model).state_dict(), "config": _config_dict(model),
               "tokenizer": tokenizer, "train_state": train_state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict on the CPU; tensors that share memory in the model still share it (ties survive)."""
    copies: dict[tuple, torch.Tensor] = {}
    out = {}
    for k, v in _unwrap(model).state_dict().items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride(), v.dtype)
        if ident not in copies:
            copies[ident] = v.detach().cpu()
        out[k] = copies[ident]
    return out


def export_released(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """`{"model": state_dict}` as released, tied tensors stored once: loads in other VALL-E X tools."""
    config = _unwrap(model).config
    if not config.share_embedding:
        log.warning("%s: the model's NAR output layers are not tied to its audio embeddings "
                    "(share_embedding false); tools that build VALL-E X as released tie them and load "
                    "only one of each pair", path)
    state_dict = _cpu_state_dict(model)
    return atomic_write(path, lambda tmp: torch.save({"model": state_dict}, tmp))


def export_safetensors(model: torch.nn.Module, path: str | os.PathLike, tokenizer: dict | None = None) -> Path:
    """Weights with the config (and tokenizer) as JSON metadata. safetensors cannot hold shared tensors:
    its `save_model` stores each tied tensor once and notes the dropped name in the metadata
    ({alias: stored key}), from which `load_checkpoint` ties them again."""
    from safetensors.torch import save_model

    meta = {"format": FORMAT_TAG, "config": json.dumps(_config_dict(model))}
    if tokenizer is not None:
        meta["tokenizer"] = json.dumps(tokenizer, ensure_ascii=False)
    return atomic_write(path, lambda tmp: save_model(_unwrap(model), str(tmp), metadata=meta))
