"""Low-rank adapters (LoRA) for VALL-E X: train a few MB per voice on a frozen base, merge them for inference.

A LoRA pair on a base weight W (out, in) adds `scale * B @ A` to it, A (r, in), B (out, r), scale = alpha / r:
`h = W x + b + scale * B (A dropout(x))`. B starts at zero, so a fresh adapter is exactly the base model.
The released model packs q, k, v into one `self_attn.in_proj_weight` (3D, D): it gets one pair per projection
(A (3, r, D), B (3, D, r)), i.e. standard LoRA on q, k and v separately, merged into the three row blocks.
Every pair is stored that way, `packs` pairs per weight: A (packs, r, in), B (packs, out / packs, r).

The adapters live in a module of their own (`LoRA`) and act through forward hooks on the base layers, so the
model's parameter names (the released ones) never change: `model.state_dict()` is the base, an adapter file holds
the pairs (keyed `<base weight name>.lora_A|lora_B`), plus any base tensors trained with them (`--trainable`).
Adapter files (save, load, check and merge into a model) are valle/models/checkpoint/adapter_files.py's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from valle.config import AdapterConfig
from valle.errors import UserError

TARGETS = ("attn", "ffn", "predict")
HALVES = ("ar", "nar")
# ScaledAdam moves each tensor relative to its RMS, floored at `param_min_rms` (1e-5): a zero-initialised B would
# then move by lr * 1e-5 per step and never grow. Adapter runs floor it here instead: B's first steps are about
# lr * 0.01 (1e-4 at the fine-tuning lr 0.01, an AdamW-like LoRA step); A (RMS ~ 1/sqrt(3 in)) is barely affected.
SCALED_ADAM_MIN_RMS = 0.01
_DEFAULT = AdapterConfig()  # the flags' defaults: one place


@dataclass(frozen=True)
class AdapterSpec:
    """What an adapter is: recorded in its file, rebuilt from it."""

    kind: str = "lora"
    rank: int = _DEFAULT.lora_rank
    alpha: float = _DEFAULT.lora_alpha
    dropout: float = _DEFAULT.lora_dropout
    targets: tuple[str, ...] = tuple(_DEFAULT.lora_targets.split(","))
    halves: tuple[str, ...] = ("ar",)

    def __post_init__(self):
        if self.kind != "lora":
            raise UserError(f"adapter kind {self.kind!r}: only lora is supported")
        AdapterConfig(lora_rank=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout)  # their one check
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise UserError(f"--lora-targets {','.join(self.targets)}: use a comma-separated subset of "
                            f"{','.join(TARGETS)}")
        if not self.halves or any(h not in HALVES for h in self.halves):
            raise UserError(f"adapter halves {self.halves}: must be ar and/or nar")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {**d, "targets": list(self.targets), "halves": list(self.halves)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "adapter") -> AdapterSpec:
        try:
            d = dict(d)
            halves = d.pop("stages", None) or d.pop("halves")  # "stages": files written before the rename
            return cls(**{**d, "targets": tuple(d["targets"]), "halves": tuple(halves)})
        except (TypeError, KeyError) as e:
            raise UserError(f"{where}: its adapter description is not readable by this version ({e}): "
                            "upgrade valle-toolkit") from None


def parse_targets(text: str) -> tuple[str, ...]:
    """'attn,ffn' -> ("attn", "ffn") (checked by AdapterSpec)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


@dataclass
class Target:
    """One base weight an adapter changes: `weight_name` in the state dict, owned by `owner` as `attr`;
    `hook` is the module whose output the adapter adds to; `packs` low-rank pairs split its rows."""

    weight_name: str
    owner: nn.Module
    attr: str
    hook: nn.Module
    packs: int

    @property
    def weight(self) -> Tensor:
        return getattr(self.owner, self.attr)


def find_targets(model: nn.Module, halves: Iterable[str], kinds: Iterable[str]) -> list[Target]:
    """The weights of the given halves that `kinds` (attn, ffn, predict) name, in state-dict order."""
    kinds, found = set(kinds), []
    for half in halves:
        decoder = getattr(model, f"{half}_decoder")
        for i, layer in enumerate(decoder.layers):
            prefix = f"{half}_decoder.layers.{i}"
            if "attn" in kinds:
                attn = layer.self_attn
                found.append(Target(f"{prefix}.self_attn.in_proj_weight", attn, "in_proj_weight", attn.in_proj, 3))
                found.append(Target(f"{prefix}.self_attn.out_proj.weight", attn.out_proj, "weight", attn.out_proj, 1))
            if "ffn" in kinds:
                for name in ("linear1", "linear2"):
                    lin = getattr(layer, name)
                    found.append(Target(f"{prefix}.{name}.weight", lin, "weight", lin, 1))
        if "predict" in kinds:
            heads = [("ar_predict_layer", model.ar_predict_layer)] if half == "ar" else [
                (f"nar_predict_layers.{j}", lin) for j, lin in enumerate(model.nar_predict_layers)]
            found += [Target(f"{name}.weight", lin, "weight", lin, 1) for name, lin in heads]
    return found


class LoRAPair(nn.Module):
    """`packs` low-rank pairs for one weight (out, in): A (packs, r, in) random, B (packs, out / packs, r) zero."""

    def __init__(self, out_features: int, in_features: int, packs: int, rank: int, scale: float, dropout: float):
        super().__init__()
        self.A = nn.Parameter(torch.empty(packs, rank, in_features))
        self.B = nn.Parameter(torch.zeros(packs, out_features // packs, rank))
        for a in self.A.data:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # nn.Linear's init, as LoRA's A
        self.scale = scale
        self.dropout = nn.Dropout(dropout)

    def delta(self, x: Tensor) -> Tensor:
        """x (..., in) -> scale * B A dropout(x), (..., out)."""
        packs, rank, _ = self.A.shape
        u = F.linear(self.dropout(x), self.A.reshape(packs * rank, -1))  # (..., P*r)
        if packs == 1:
            return F.linear(u, self.B[0]) * self.scale  # (..., out)
        u = u.unflatten(-1, (packs, rank))  # (..., P, r)
        return torch.einsum("...pr,por->...po", u, self.B).flatten(-2) * self.scale  # (..., P*out/P)

    def weight_delta(self) -> Tensor:
        """scale * B @ A per pack, stacked as the weight's rows: (out, in)."""
        return (self.B @ self.A).flatten(0, 1) * self.scale


def _add_delta(pair: LoRAPair):
    def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        return out + pair.delta(args[0]).to(out.dtype)

    return hook


class LoRA(nn.Module):
    """The adapters of one model, applied through forward hooks (the model's own modules are not replaced).

    Parameters are named `<base weight name>.lora_A|lora_B` by `named_adapter_parameters` (the file's keys)."""

    def __init__(self, model: nn.Module, spec: AdapterSpec):
        super().__init__()
        self.spec = spec
        self.targets = find_targets(model, spec.halves, spec.targets)
        self.pairs = nn.ModuleList(
            LoRAPair(t.weight.shape[0], t.weight.shape[1], t.packs, spec.rank, spec.scale, spec.dropout)
            for t in self.targets)
        for t, pair in zip(self.targets, self.pairs):
            pair.to(t.weight.device)  # the adapted half's device (the other half may be in host memory)
        self._handles = []
        self.add_hooks()

    def add_hooks(self) -> None:
        """Put the hooks (back) on: the model runs with these adapters until `remove`."""
        if not self._handles:
            self._handles = [t.hook.register_forward_hook(_add_delta(pair))
                             for t, pair in zip(self.targets, self.pairs)]

    def named_adapter_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"{t.weight_name}.lora_{ab}", getattr(pair, ab))
                for t, pair in zip(self.targets, self.pairs) for ab in ("A", "B")]

    def adapter_state_dict(self) -> dict[str, Tensor]:
        return {name: p.detach() for name, p in self.named_adapter_parameters()}

    @torch.no_grad()
    def merge(self, model: nn.Module) -> None:
        """Add every pair into its base weight of `model` and remove the hooks: generation then runs at full-model
        speed. A weight tied to another (NAR output layers with shared embeddings) is untied first, and the
        model's config says so (share_embedding false)."""
        names: dict[int, int] = {}
        for _, p in model.named_parameters(remove_duplicate=False):
            names[id(p)] = names.get(id(p), 0) + 1
        for t, pair in zip(self.targets, self.pairs):
            w = t.weight
            if names.get(id(w), 0) > 1:
                w = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
                setattr(t.owner, t.attr, w)
                model.config = dataclasses.replace(model.config, share_embedding=False)
            w.add_(pair.weight_delta().to(w.dtype))
        self.remove()

    def remove(self) -> None:
        """Take the hooks off: the model is the base again (unless merged)."""
        for h in self._handles:
            h.remove()
        self._handles = []


# ---- base identity ----------------------------------------------------------------------------

def fingerprint(model: nn.Module, half: str) -> str:
    """sha256 of the `half` half's tensors (names and float32 values, state-dict order): 16 hex digits."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if name.startswith(half + "_"):
            h.update(name.encode())
            h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


_LAYOUT_FIELDS = ("d_model", "nhead", "num_layers", "text_vocab_size", "audio_vocab_size", "num_quantizers",
                  "num_languages", "share_embedding", "add_prenet")


def base_identity(model: nn.Module, halves: Iterable[str], source: str) -> dict:
    """What an adapter file records about its base: where it came from, its layout, a fingerprint per half."""
    config = model.config.to_dict()
    return {"source": source, "layout": {k: config[k] for k in _LAYOUT_FIELDS},
            "fingerprint": {half: fingerprint(model, half) for half in halves}}


def check_base(model: nn.Module, base: dict, where: str, base_name: str) -> None:
    """UserError unless `model` is the base the adapter at `where` was trained on (layout, then weights)."""
    config = model.config.to_dict()
    differ = [f"{k} {v} vs {config[k]}" for k, v in base["layout"].items() if config.get(k) != v]
    if differ:
        raise UserError(f"{where}: made for a base of another layout than {base_name} ({'; '.join(differ)}): "
                        f"use the base it was trained on ({base['source']})")
    for half, expected in base["fingerprint"].items():
        got = fingerprint(model, half)
        if got != expected:
            raise UserError(f"{where}: made for base {base['source']} ({half.upper()} weights {expected}) but "
                            f"{base_name} has other {half.upper()} weights ({got}): pass --checkpoint "
                            f"{base['source']}, the base it was trained on")


# ---- attaching and merging --------------------------------------------------------------------

def attach(model: nn.Module, spec: AdapterSpec) -> LoRA:
    """Fresh adapters (B = 0) on `model`, whose weights are frozen (requires_grad off)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return LoRA(model, spec)


def base_overrides(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """The base tensors an adapter file carries (trained along with the pairs through --trainable)."""
    return {k: v for k, v in weights.items() if ".lora_" not in k}


def load_overrides(model: nn.Module, weights: dict[str, Tensor], where: str) -> None:
    """Copy the base tensors of an adapter file into `model` (names and shapes checked)."""
    own = model.state_dict()
    for name, value in base_overrides(weights).items():
        if name not in own or own[name].shape != value.shape:
            raise UserError(f"{where}: carries base tensor {name} {list(value.shape)}, which the base model "
                            "does not have in that shape: use the base it was trained on")
        with torch.no_grad():
            own[name].copy_(value)
