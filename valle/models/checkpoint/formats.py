"""Reading checkpoint files safely and telling what they hold: the format, the weights, the model config.

Three kinds of file are read:
  released  `{"model": state_dict}` (maybe more keys, maybe pickled `pathlib` paths), or a bare state_dict
  icefall   lifeiteng/vall-e training checkpoints: `model` plus optimizer/scheduler/sampler states and the
            training params flattened into the top level (`nhead`, `batch_idx_train`, ...)
  toolkit   ours: `format`, `model`, `config`, `tokenizer`, `train_state` (also `.safetensors` exports)
Every file is read with `torch.load(weights_only=True)` and a small allow-list: no pickled code ever runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from valle.config import ModelConfig
from valle.safe_load import CheckpointError
from valle.safe_load import first_line as _first_line
from valle.safe_load import torch_load as _torch_load

FORMAT_TAG = "valle-toolkit/1"
ADAPTER_TAG = "valle-toolkit-adapter/1"  # adapter files (LoRA): valle/models/adapters.py
RELEASED_NAME = "vallex"  # `--checkpoint vallex`: the released checkpoint (hub.py)
DEFAULT_NHEAD = 16  # the released checkpoint's; a state_dict cannot tell the number of heads

# Top-level keys that icefall's save_checkpoint or lifeiteng's trainer params put next to `model`.
_ICEFALL_KEYS = {"optimizer", "scheduler", "grad_scaler", "sampler", "model_avg", "batch_idx_train",
                 "cur_epoch", "best_train_loss", "best_valid_loss", "decoder_dim", "num_decoder_layers"}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile


@dataclass
class LoadedCheckpoint:
    kind: str  # "released" | "icefall" | "toolkit"
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: dict | None = None
    train_state: dict | None = None


# ---- safe reading ------------------------------------------------------------------------------

def check_file(path: Path) -> None:
    """CheckpointError unless `path` is a file (a folder or a missing path is named, with what to pass)."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file: pass the .pt file inside it")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file: pass --checkpoint PATH to an existing file, "
                              f"or --checkpoint {RELEASED_NAME} for the released VALL-E X weights")


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights and metadata, ties restored. safetensors' own `load_model` needs the model built first; this
    reads the file alone (the config is in it) so the strict-load report can say what does not fit."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
        ties = json.loads(meta.get("tied", "{}"))  # written by earlier versions
        # safetensors.torch.save_model notes each name it dropped as a shared tensor: {dropped: kept}
        ties.update({k: v for k, v in meta.items() if k not in state_dict and v in state_dict})
        for alias, stored in ties.items():
            state_dict[alias] = state_dict[stored]  # the very same tensor: the tie survives
    except MemoryError:
        raise
    except Exception as e:  # SafetensorError, bad metadata, OSError
        raise CheckpointError(f"{path}: cannot read it as safetensors ({_first_line(e)}): "
                              "the file is truncated or corrupt, export or copy it again") from None
    return state_dict, meta


# ---- format and config detection ---------------------------------------------------------------

def strip_wrappers(state_dict: dict) -> dict:
    """The keys without the prefix DDP ("module.") or torch.compile ("_orig_mod.") put on every one of them."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def _as_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict of named tensors: "
                              "not a VALL-E X checkpoint")
    state_dict = strip_wrappers(dict(obj))
    if "ar_text_embedding.word_embeddings.weight" not in state_dict:
        raise CheckpointError(f"{path}: has no ar_text_embedding.word_embeddings.weight: "
                              "not a VALL-E X checkpoint")
    return state_dict


def _count_indices(state_dict: Mapping, prefix: str) -> int:
    found = {int(m.group(1)) for k in state_dict for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b are one tensor (the same view of the same storage) or equal in shape, dtype and values."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    same_view = (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
                 and a.storage_offset() == b.storage_offset() and a.stride() == b.stride())
    return same_view or torch.equal(a, b)


def _tie_pairs(num_quantizers: int) -> list[tuple[str, str]]:
    """(output layer, embedding) pairs tied with share_embedding: NAR predict layer j <-> audio embedding j+2."""
    return [(f"nar_predict_layers.{j}.weight", f"nar_audio_embeddings.{j + 2}.word_embeddings.weight")
            for j in range(num_quantizers - 2)]


def _detect_shared(state_dict: Mapping, num_quantizers: int) -> bool:
    pairs = [(a, b) for a, b in _tie_pairs(num_quantizers) if a in state_dict and b in state_dict]
    return bool(pairs) and all(same_tensor(state_dict[a], state_dict[b]) for a, b in pairs)


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor], nhead: int = DEFAULT_NHEAD,
                           **known) -> ModelConfig:
    """Sizes from tensor shapes, share_embedding from identical tied tensors, add_prenet from prenet keys.
    `known` supplies what shapes cannot tell (prefix_mode, ...)."""
    text_rows, d_model = state_dict["ar_text_embedding.word_embeddings.weight"].shape
    detected = {"d_model": d_model, "nhead": nhead, "text_vocab_size": text_rows,
                "num_layers": _count_indices(state_dict, "ar_decoder.layers.")}
    num_quantizers = _count_indices(state_dict, "nar_audio_embeddings.")
    if num_quantizers:
        detected["num_quantizers"] = num_quantizers
        detected["share_embedding"] = _detect_shared(state_dict, num_quantizers)
    if "ar_predict_layer.weight" in state_dict:
        detected["audio_vocab_size"] = state_dict["ar_predict_layer.weight"].shape[0] - 1  # + EOS
    if "ar_language_embedding.word_embeddings.weight" in state_dict:
        detected["num_languages"] = state_dict["ar_language_embedding.word_embeddings.weight"].shape[0]
    detected["add_prenet"] = any("_prenet." in k for k in state_dict)
    return ModelConfig(**{**known, **detected})


def _pick_nhead(path: Path, stored: int | None, asked: int | None, d_model: int) -> int:
    if stored is not None and asked is not None and stored != asked:
        raise CheckpointError(f"{path}: was trained with nhead {stored} but nhead {asked} was asked for: "
                              "drop --nhead (the checkpoint records it)")
    nhead = asked or stored or DEFAULT_NHEAD
    if nhead <= 0 or d_model % nhead:
        raise CheckpointError(f"{path}: d_model {d_model} is not divisible by nhead {nhead}: pass a --nhead "
                              f"that divides {d_model} (the released model uses {DEFAULT_NHEAD})")
    return nhead


def _toolkit_config(path: Path, stored: object, nhead: int | None) -> ModelConfig:
    try:
        config = ModelConfig.from_dict(dict(stored))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model config is not readable by this version ({e}): "
                              "upgrade valle-toolkit or re-export the checkpoint") from None
    _pick_nhead(path, config.nhead, nhead, config.d_model)
    return config


def _not_an_adapter(path: Path, tag: object) -> None:
    if tag == ADAPTER_TAG:
        raise CheckpointError(f"{path}: is an adapter file, not a full checkpoint: give the base with --checkpoint "
                              "(or as the checkpoint) and this file with --adapter; to resume an adapter run, "
                              "pass its --adapter flags again")


def _from_safetensors(path: Path, nhead: int | None) -> LoadedCheckpoint:
    state_dict, meta = read_safetensors(path)
    _not_an_adapter(path, meta.get("format"))
    state_dict = _as_state_dict(state_dict, path)
    if meta.get("format") == FORMAT_TAG:
        config = _toolkit_config(path, json.loads(meta["config"]), nhead)
        tokenizer = json.loads(meta["tokenizer"]) if "tokenizer" in meta else None
        return LoadedCheckpoint("toolkit", config, state_dict, tokenizer=tokenizer)
    d_model = state_dict["ar_text_embedding.word_embeddings.weight"].shape[1]
    config = config_from_state_dict(state_dict, _pick_nhead(path, None, nhead, d_model))
    return LoadedCheckpoint("released", config, state_dict)


def load_checkpoint(path: str | os.PathLike, nhead: int | None = None) -> LoadedCheckpoint:
    """Read any supported checkpoint file and build the ModelConfig it was trained with.
    `nhead` is needed only where the file does not record it (the released file: default 16)."""
    path = Path(path).expanduser()
    check_file(path)
    if path.suffix == ".safetensors":
        return _from_safetensors(path, nhead)
    obj = _torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict with a 'model' "
                              "state dict: not a VALL-E X checkpoint")
    tag = obj.get("format")
    _not_an_adapter(path, tag)
    if isinstance(tag, str) and tag.startswith("valle-toolkit/"):
        if tag != FORMAT_TAG:
            raise CheckpointError(f"{path}: written in format {tag}, this version reads {FORMAT_TAG}: "
                                  "upgrade valle-toolkit")
        state_dict = _as_state_dict(obj.get("model"), path)
        return LoadedCheckpoint("toolkit", _toolkit_config(path, obj.get("config"), nhead), state_dict,
                                tokenizer=obj.get("tokenizer"), train_state=obj.get("train_state"))
    if "model" not in obj:
        if not all(isinstance(v, torch.Tensor) for v in obj.values()):
            keys = ", ".join(map(str, list(obj)[:8]))
            raise CheckpointError(f"{path}: has no 'model' state dict (its keys: {keys}): "
                                  "not a VALL-E X checkpoint")
        state_dict, kind, rest = _as_state_dict(obj, path), "released", {}  # a bare state_dict
    else:
        state_dict = _as_state_dict(obj["model"], path)
        kind = "icefall" if _ICEFALL_KEYS & set(obj) else "released"
        rest = {k: v for k, v in obj.items() if k != "model"}
    d_model = state_dict["ar_text_embedding.word_embeddings.weight"].shape[1]
    stored_nhead = rest.get("nhead") if isinstance(rest.get("nhead"), int) else None
    known = {"prefix_mode": rest["prefix_mode"]} if isinstance(rest.get("prefix_mode"), int) else {}
    config = config_from_state_dict(state_dict, _pick_nhead(path, stored_nhead, nhead, d_model), **known)
    return LoadedCheckpoint(kind, config, state_dict, train_state=rest if kind == "icefall" else None)
