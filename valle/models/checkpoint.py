"""Checkpoint files: safe reading, format and config detection, strict loading with a readable diff,
atomic saving, export (released layout, safetensors) and the released checkpoint's download.

Three kinds of file are read:
  released  `{"model": state_dict}` (maybe more keys, maybe pickled `pathlib` paths), or a bare state_dict
  icefall   lifeiteng/vall-e training checkpoints: `model` plus optimizer/scheduler/sampler states and the
            training params flattened into the top level (`nhead`, `batch_idx_train`, ...)
  toolkit   ours: `format`, `model`, `config`, `tokenizer`, `train_state` (also `.safetensors` exports)
Every file is read with `torch.load(weights_only=True)` and a small allow-list: no pickled code ever runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from valle.errors import UserError
from valle.config import ModelConfig
from valle.safe_load import CheckpointError, first_line as _first_line, torch_load as _torch_load
from valle.models.adapters import AdapterSpec

log = logging.getLogger(__name__)

FORMAT_TAG = "valle-toolkit/1"
ADAPTER_TAG = "valle-toolkit-adapter/1"  # adapter files (LoRA): valle/models/adapters.py
RELEASED_NAME = "vallex"
RELEASED_REPO = "Plachta/VALL-E-X"
RELEASED_FILENAME = "vallex-checkpoint.pt"
DEFAULT_NHEAD = 16  # the released checkpoint's; a state_dict cannot tell the number of heads
# Environment variables (documented in the README) for mirrors and the cache.
ENV_CACHE_DIR = "VALLE_CACHE_DIR"
ENV_REPO = "VALLE_CHECKPOINT_REPO"
ENV_FILENAME = "VALLE_CHECKPOINT_FILENAME"
ENV_URL = "VALLE_CHECKPOINT_URL"

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

def _check_file(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file: pass the .pt file inside it")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file: pass --checkpoint PATH to an existing file, "
                              f"or --checkpoint {RELEASED_NAME} for the released VALL-E X weights")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
        for alias, stored in json.loads(meta.get("tied", "{}")).items():
            state_dict[alias] = state_dict[stored]  # the very same tensor: the tie survives
    except MemoryError:
        raise
    except Exception as e:  # SafetensorError, bad metadata, OSError
        raise CheckpointError(f"{path}: cannot read it as safetensors ({_first_line(e)}): "
                              "the file is truncated or corrupt, export or copy it again") from None
    return state_dict, meta


# ---- format and config detection ---------------------------------------------------------------

def _strip_wrappers(state_dict: dict) -> dict:
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def _as_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict of named tensors: "
                              "not a VALL-E X checkpoint")
    state_dict = _strip_wrappers(dict(obj))
    if "ar_text_embedding.word_embeddings.weight" not in state_dict:
        raise CheckpointError(f"{path}: has no ar_text_embedding.word_embeddings.weight: "
                              "not a VALL-E X checkpoint")
    return state_dict


def _count_indices(state_dict: Mapping, prefix: str) -> int:
    found = {int(m.group(1)) for k in state_dict for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
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
    return bool(pairs) and all(_same_tensor(state_dict[a], state_dict[b]) for a, b in pairs)


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
    state_dict, meta = _read_safetensors(path)
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
    _check_file(path)
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


# ---- strict loading with a readable report -----------------------------------------------------

_FIRST_INDEX = re.compile(r"\.(\d+)(?=\.|$)")
_MAX_SHAPE_LINES = 12
# (group name pattern, hint when the model has it but the checkpoint not, hint for the reverse)
_HINTS = [
    (re.compile(r"_prenet$"), "the model has a prenet the checkpoint lacks (build with --add-prenet false)",
     "the checkpoint was trained with a prenet (build with --add-prenet true)"),
    (re.compile(r"_language_embedding"), "the checkpoint has no language embedding: a monolingual VALL-E, "
     "not VALL-E X", "the checkpoint has a language embedding the model lacks"),
]


def _group_name(key: str) -> str:
    """Where a key's first numeric index starts (`ar_decoder.layers`), else its top-level module."""
    m = _FIRST_INDEX.search(key)
    return key[:m.start()] if m else key.split(".")[0]


def _ranges(numbers: Iterable[int]) -> str:
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _key_groups(keys: list[str], missing: bool) -> list[str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for k in keys:
        groups[_group_name(k)].append(k)
    lines = []
    for name, members in groups.items():
        if len(members) == 1:
            text = members[0]
        else:
            detail = f"{len(members)} tensors"
            if name.endswith("layers"):
                indices = [int(_FIRST_INDEX.search(k).group(1)) for k in members]
                detail = f"layers {_ranges(indices)}, {detail}"
            text = f"{name}.* ({detail})"
        for pattern, if_missing, if_unexpected in _HINTS:
            if pattern.search(name):
                text += f": {if_missing if missing else if_unexpected}"
        lines.append(text)
    return lines


def _shape_groups(mismatched: list[tuple[str, tuple, tuple]]) -> list[str]:
    """Collapse layer indices: one line per (key pattern, checkpoint shape, model shape)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for key, found, wanted in mismatched:
        groups[(re.sub(r"\.\d+(?=\.|$)", ".*", key), found, wanted)].append(key)
    lines = []
    for (pattern, found, wanted), keys in groups.items():
        name = keys[0] if len(keys) == 1 else f"{pattern} ({len(keys)} tensors)"
        lines.append(f"{name} checkpoint {list(found)} vs model {list(wanted)}")
    if len(lines) > _MAX_SHAPE_LINES:
        lines = lines[:_MAX_SHAPE_LINES] + [f"... and {len(lines) - _MAX_SHAPE_LINES} more"]
    return lines


def layout_report(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> list[str]:
    """The differences between two {key: shape} layouts as grouped, readable lines (empty: they agree)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [(k, tuple(found[k]), tuple(expected[k])) for k in expected
                  if k in found and tuple(found[k]) != tuple(expected[k])]
    return ([f"missing: {line}" for line in _key_groups(missing, missing=True)]
            + [f"unexpected: {line}" for line in _key_groups(unexpected, missing=False)]
            + [f"shape mismatch: {line}" for line in _shape_groups(mismatched)])


def _shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _tie_groups(model: torch.nn.Module) -> list[list[str]]:
    """Names that are one and the same Parameter (tied weights)."""
    names: dict[int, list[str]] = defaultdict(list)
    for name, p in model.named_parameters(remove_duplicate=False):
        names[id(p)].append(name)
    return [group for group in names.values() if len(group) > 1]


def _tie_report(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Tensors one Parameter in the model must have equal values in the checkpoint."""
    broken = [group for group in _tie_groups(model)
              if not all(_same_tensor(state_dict[group[0]], state_dict[k]) for k in group[1:])]
    if not broken:
        return []
    names = sorted({_group_name(k) + ".*" for group in broken for k in group})
    return [f"tied: {' and '.join(names)} share weights in the model but differ in the checkpoint "
            f"({len(broken)} pairs): it was trained without a shared embedding "
            "(build with --share-embedding false)"]


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str = "checkpoint") -> None:
    """load_state_dict(strict=True), but a mismatch raises CheckpointError with a grouped report."""
    state_dict = _strip_wrappers(dict(state_dict))
    lines = layout_report(_shapes(model.state_dict()), _shapes(state_dict))
    lines = lines or _tie_report(model, state_dict)
    if lines:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(lines))
    model.load_state_dict(state_dict, strict=True)


# ---- building models ---------------------------------------------------------------------------

def _valle_class():
    from valle.models.valle import VALLE

    return VALLE


def expected_layout(config: ModelConfig | None = None) -> dict[str, tuple]:
    """Every key and shape of a VALLE state_dict for `config` (default: the released model); no memory used."""
    with torch.device("meta"):
        model = _valle_class()(config or ModelConfig())
    return _shapes(model.state_dict())


def verify_layout(state_dict: Mapping[str, torch.Tensor], config: ModelConfig | None = None,
                  source: str = "checkpoint") -> None:
    """Raise CheckpointError unless `state_dict` has exactly the keys and shapes of `config`'s model."""
    lines = layout_report(expected_layout(config), _shapes(_strip_wrappers(dict(state_dict))))
    if lines:
        raise CheckpointError(f"{source} is not in the expected layout:\n  " + "\n  ".join(lines))


def _empty_model(config: ModelConfig, device: str | torch.device) -> torch.nn.Module:
    """VALLE(config) with uninitialized weights (a checkpoint overwrites them all): random init of the
    full-size model takes seconds. Falls back to a normal build if the model has state outside its state_dict."""
    with torch.device("meta"):
        model = _valle_class()(config)
    if set(dict(model.named_buffers())) - set(model.state_dict()):
        with torch.device(device):
            return _valle_class()(config)
    ties = _tie_groups(model)
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


# ---- saving and export -------------------------------------------------------------------------

def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    inner = getattr(model, "module", None)
    if not isinstance(inner, torch.nn.Module):
        inner = getattr(model, "_orig_mod", None)
    return _unwrap(inner) if isinstance(inner, torch.nn.Module) else model


def _fsync_dir(directory: Path) -> None:
    if os.name == "posix":
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """write(tmp) next to `path`, fsync, then os.replace: a crash leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


_PLAIN = (str, int, float, bool, bytes, type(None), torch.Tensor, PurePath, np.generic)


def _check_plain(obj: object, where: str) -> None:
    """Only what `load_checkpoint` reads back (weights_only) may be saved."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_plain(k, where)
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(f"{where} is a {type(obj).__name__}: a checkpoint holds plain data only "
                        "(dict, list, str, numbers, tensors, paths); convert it before saving")


def _config_dict(model: torch.nn.Module) -> dict:
    return _unwrap(model).config.to_dict()


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, tokenizer: dict | None = None,
                    train_state: dict | None = None) -> Path:
    """Write a toolkit checkpoint atomically: weights, model config, tokenizer info, training state."""
    _check_plain(tokenizer, "tokenizer")
    _check_plain(train_state, "train_state")
    payload = {"format": FORMAT_TAG, "model": _unwrap(model).state_dict(), "config": _config_dict(model),
               "tokenizer": tokenizer, "train_state": train_state}
    return _atomic_write(path, lambda tmp: torch.save(payload, tmp))


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
    return _atomic_write(path, lambda tmp: torch.save({"model": state_dict}, tmp))


def export_safetensors(model: torch.nn.Module, path: str | os.PathLike, tokenizer: dict | None = None) -> Path:
    """safetensors cannot hold shared tensors: each tied tensor is stored once, the tie goes in the
    metadata (`tied`: {alias: stored key}) with the config; `load_checkpoint` restores it."""
    from safetensors.torch import save_file

    stored: dict[str, torch.Tensor] = {}
    ties: dict[str, str] = {}
    first_key: dict[int, str] = {}
    for k, v in _cpu_state_dict(model).items():
        if id(v) in first_key:
            ties[k] = first_key[id(v)]
        else:
            first_key[id(v)] = k
            stored[k] = v.contiguous()
    meta = {"format": FORMAT_TAG, "config": json.dumps(_config_dict(model)), "tied": json.dumps(ties)}
    if tokenizer is not None:
        meta["tokenizer"] = json.dumps(tokenizer, ensure_ascii=False)
    return _atomic_write(path, lambda tmp: save_file(stored, str(tmp), metadata=meta))


# ---- adapter files -----------------------------------------------------------------------------

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
        return _atomic_write(path, lambda tmp: save_file(weights, str(tmp), metadata=meta))
    _check_plain(tokenizer, "tokenizer")
    _check_plain(train_state, "train_state")
    payload = {"format": ADAPTER_TAG, "adapter": spec.to_dict(), "weights": weights, "base": base,
               "tokenizer": tokenizer, "train_state": train_state}
    return _atomic_write(path, lambda tmp: torch.save(payload, tmp))


def is_adapter_file(path: str | os.PathLike) -> bool:
    """Whether `path` is an adapter file (reads the safetensors header, or the .pt lazily: mmap)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        return _read_safetensors(path)[1].get("format") == ADAPTER_TAG
    obj = _torch_load(path)
    return isinstance(obj, Mapping) and obj.get("format") == ADAPTER_TAG


def load_adapter(path: str | os.PathLike) -> LoadedAdapter:
    """Read an adapter file written by `save_adapter` (.pt or .safetensors)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such adapter file: pass the best-valid-loss.pt (or exported "
                              ".safetensors) of an adapter run")
    if path.suffix == ".safetensors":
        weights, meta = _read_safetensors(path)
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


# ---- the released checkpoint -------------------------------------------------------------------

def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "valle-toolkit"


def _download_url(url: str, dest: Path) -> Path:
    from tqdm import tqdm

    target = dest / RELEASED_FILENAME
    with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=RELEASED_FILENAME) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    return target


class _Offline(Exception):
    """The download host cannot be reached: said at once, instead of after a minute of retries."""


def _check_reachable(url: str) -> None:
    """A quick TCP connect to the download host (3 s); HF_HUB_OFFLINE=1 means offline."""
    import socket
    import urllib.parse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise _Offline("HF_HUB_OFFLINE is set")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return  # file:// and the like: nothing to reach
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=3).close()
    except OSError as e:
        raise _Offline(f"{parts.hostname} cannot be reached: {e.strerror or e}") from None


def _download(dest: Path, repo_id: str, filename: str, url: str | None) -> Path:
    """Fetch the file into directory `dest` with a progress bar; returns the file's path."""
    _check_reachable(url or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if url:
        return _download_url(url, dest)
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo_id, filename=filename, local_dir=dest))


def resolve_checkpoint(path_or_name: str | os.PathLike, *, repo_id: str | None = None,
                       filename: str | None = None, url: str | None = None,
                       expected: ModelConfig | None = None, flag: str = "--checkpoint") -> Path:
    """PATH -> the file (checked to exist). "vallex" -> the released checkpoint: from the user cache,
    else downloaded (Hugging Face Hub, or a plain URL), checked by layout (`expected`, default the
    released config: every key and shape) and moved into the cache."""
    if str(path_or_name) != RELEASED_NAME:
        path = Path(path_or_name).expanduser()
        _check_file(path)
        return path
    cached = cache_dir() / RELEASED_FILENAME
    if cached.is_file():
        return cached
    repo_id = repo_id or os.environ.get(ENV_REPO) or RELEASED_REPO
    filename = filename or os.environ.get(ENV_FILENAME) or RELEASED_FILENAME
    url = url or os.environ.get(ENV_URL) or None
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix="download-", dir=cached.parent))
    try:
        got = _download(tmp_dir, repo_id, filename, url)
        verify_layout(load_checkpoint(got).state_dict, expected, source=f"the downloaded {got.name}")
        os.replace(got, cached)
    except Exception as e:  # network, hub, disk or layout: one message saying what to do instead
        source = url or f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
        reason = str(e) if isinstance(e, (CheckpointError, _Offline)) else _first_line(e)
        scratch = f", or train from scratch with {flag} none" if flag == "--init-checkpoint" else ""
        raise CheckpointError(
            f"could not get the released VALL-E X checkpoint from {source} ({reason}). Download "
            f"{RELEASED_FILENAME} yourself (from https://huggingface.co/{RELEASED_REPO} or a mirror; set "
            f"{ENV_URL}, {ENV_REPO} or HF_ENDPOINT to use one) and pass {flag} PATH or copy it to {cached}"
            f"{scratch}") from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    log.info("saved the released checkpoint to %s", cached)
    return cached
