"""Adapter files (LoRA, valle/models/adapters.py): `.pt` (our format, with the training state to resume) or
`.safetensors` (description, base and tokenizer as JSON metadata), both tagged so that neither is mistaken for
a full checkpoint; their pairs loaded into a model's adapters, or merged into its weights after every check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from valle.errors import UserError
from valle.models.adapters import AdapterSpec, LoRA, check_base, load_overrides
from valle.models.checkpoint.export import check_plain
from valle.models.checkpoint.formats import ADAPTER_TAG, read_safetensors
from valle.models.checkpoint.layout import layout_report
from valle.safe_load import CheckpointError
from valle.safe_load import torch_load as _torch_load
from valle.storage import atomic_write


@dataclass
class LoadedAdapter:
    spec: AdapterSpec
    weights: dict[str, torch.Tensor]  # `<base weight>.lora_A|lora_B` pairs, and base tensors trained with them
    base: dict  # source, layout, fingerprint per half (valle.models.adapters.base_identity)
    tokenizer: dict | None = None
    train_state: dict | None = None


def save_adapter(path: str | os.PathLike, spec: AdapterSpec, weights: Mapping[str, torch.Tensor], base: dict,
                 tokenizer: dict | None = None, train_state: dict | None = None) -> Path:
    """An adapter file, atomically: `.pt` (our format; holds `train_state` to resume) or `.safetensors`
    (description, base and tokenizer as JSON metadata; no training state)."""
    path = Path(path)
    weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        meta = {"format": ADAPTER_TAG, "adapter": json.dumps(spec.to_dict()), "base": json.dumps(base)}
        if tokenizer is not None:
            meta["tokenizer"] = json.dumps(tokenizer, ensure_ascii=False)
        return atomic_write(path, lambda tmp: save_file(weights, str(tmp), metadata=meta))
    check_plain(tokenizer, "tokenizer")
    check_plain(train_state, "train_state")
    payload = {"format": ADAPTER_TAG, "adapter": spec.to_dict(), "weights": weights, "base": base,
               "tokenizer": tokenizer, "train_state": train_state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def is_adapter_file(path: str | os.PathLike) -> bool:
    """Whether `path` is an adapter file (reads the safetensors header, or the .pt lazily: mmap)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        return read_safetensors(path)[1].get("format") == ADAPTER_TAG
    obj = _torch_load(path)
    return isinstance(obj, Mapping) and obj.get("format") == ADAPTER_TAG


def load_adapter(path: str | os.PathLike) -> LoadedAdapter:
    """Read an adapter file written by `save_adapter` (.pt or .safetensors)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such adapter file: pass the best-valid-loss.pt (or exported "
                              ".safetensors) of an adapter run")
    if path.suffix == ".safetensors":
        weights, meta = read_safetensors(path)
        obj = {"format": meta.get("format"), "weights": weights,
               **{k: json.loads(meta[k]) for k in ("adapter", "base", "tokenizer") if k in meta}}
    else:
        obj = _torch_load(path)
    if not isinstance(obj, Mapping) or obj.get("format") != ADAPTER_TAG:
        raise CheckpointError(f"{path}: not an adapter file (no {ADAPTER_TAG} tag): a full checkpoint goes to "
                              "--checkpoint; --adapter takes the files an --adapter lora run writes")
    spec = AdapterSpec.from_dict(obj["adapter"], where=str(path))
    return LoadedAdapter(spec, dict(obj["weights"]), obj["base"], tokenizer=obj.get("tokenizer"),
                         train_state=obj.get("train_state"))


def load_pairs(lora: LoRA, weights: Mapping[str, torch.Tensor], where: str) -> None:
    """Copy the pairs of an adapter file (at `where`) into `lora`: names and shapes must be exactly its own."""
    own = dict(lora.named_adapter_parameters())
    found = {k: tuple(v.shape) for k, v in weights.items() if ".lora_" in k}
    lines = layout_report({k: tuple(p.shape) for k, p in own.items()}, found)
    if lines:
        raise CheckpointError(f"{where}: its adapter weights do not fit its own description:\n  "
                              + "\n  ".join(lines))
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(weights[name])


def merge_adapter_files(model: torch.nn.Module, paths: Iterable[str | os.PathLike], base_name: str
                        ) -> list[tuple[str, LoadedAdapter]]:
    """Merge the adapter files (at most one per half) into `model` after checking each against it; returns
    (path, LoadedAdapter) of each: their text tokenizers are the loader's to check (valle.inference)."""
    loaded = [(str(p), load_adapter(p)) for p in paths]
    seen: dict[str, str] = {}
    for where, a in loaded:  # every check before any weight changes
        for half in a.spec.halves:
            if half in seen:
                raise UserError(f"{where}: adapts the {half.upper()} half, as {seen[half]} does: "
                                "give one adapter per half")
            seen[half] = where
        check_base(model, a.base, where, base_name)
    for where, a in loaded:
        load_overrides(model, a.weights, where)
        lora = LoRA(model, a.spec)
        load_pairs(lora, a.weights, where)
        lora.merge(model)
    return loaded
