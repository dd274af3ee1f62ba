"""Building blocks of VALL-E X: embeddings, pre-norm transformer layers, attention with a static KV cache.

Parameter names follow the released checkpoint (`self_attn.in_proj_weight`, `norm1.project_layer.weight`, ...),
so its state dict loads strictly without renaming. Attention masks are boolean with True = may attend
(the convention of `torch.nn.functional.scaled_dot_product_attention`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class TokenEmbedding(nn.Module):
    """An embedding table stored as `word_embeddings.weight`, as in the released checkpoint."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)

    @property
    def weight(self) -> Tensor:
        return self.word_embeddings.weight

    def forward(self, ids: Tensor) -> Tensor:
        return self.word_embeddings(ids)


class SinePositionalEmbedding(nn.Module):
    """Adds `alpha * sinusoid(position)` to its input, then dropout (no sqrt(d) scaling of the input).

    `alpha` is a parameter in every instance (it is in the checkpoint); only the AR ones are trained.
    The table is computed in float32 exactly as the reference does, so the values are bitwise the same.
    """

    def __init__(self, dim: int, dropout: float, train_alpha: bool):
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.ones(1), requires_grad=train_alpha)
        self.dropout = nn.Dropout(dropout)
        self._table: Tensor | None = None

    def table(self, length: int, like: Tensor) -> Tensor:
        """Sinusoids for positions 0..max(length, 4000)-1, (N, dim), on `like`'s device and dtype."""
        t = self._table
        if t is None or t.shape[0] < length:
            t = sinusoids(torch.arange(0, max(length, 4000), dtype=torch.float32), self.dim)  # (N, dim)
        if t.device != like.device or t.dtype != like.dtype:
            t = t.to(device=like.device, dtype=like.dtype)
        self._table = t
        return t

    def forward(self, x: Tensor, positions: Tensor | None = None, num_positions: int | None = None) -> Tensor:
        """x (B, T, dim); positions (B, T) long, or None for 0..T-1 in every row.

        num_positions: an upper bound of the positions, known on the host (saves a device sync per step).
        """
        if positions is None:
            pe = self.table(x.shape[1], x)[: x.shape[1]]  # (T, dim)
        else:
            n = num_positions if num_positions is not None else int(positions.max()) + 1
            pe = self.table(n, x)[positions]  # (B, T, dim)
        return self.dropout(x + self.alpha * pe)

    def at(self, x: Tensor, positions: Tensor) -> Tensor:
        """x (B, T, dim) at positions (B, T) long, the sinusoids computed rather than looked up in the table: the
        form an exported graph (valle/onnx_engine) takes, with no bound on the positions."""
        return self.dropout(x + self.alpha * sinusoids(positions.float(), self.dim).to(x.dtype))


def sinusoids(positions: Tensor, dim: int) -> Tensor:
    """positions (...) float32 -> (..., dim): sin(position * f_i) at even channels, cos at odd ones, with
    f_i = 10000^(-2i/dim), in float32 (the reference's table)."""
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device)
                      * -(math.log(10000.0) / dim))  # (dim/2,)
    angles = positions[..., None] * freqs  # (..., dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(*positions.shape, dim)  # no -1: T may be 0


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm that accepts (and ignores) a conditioning tensor, so plain and adaptive norms are
    interchangeable."""

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().forward(x)


class AdaptiveLayerNorm(nn.Module):
    """`w * LayerNorm(x) + b` with `(w, b) = project_layer(cond)` split in halves (cond: the NAR's codebook
    embedding)."""

    def __init__(self, dim: int):
        super().__init__()
        self.project_layer = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        weight, bias = torch.split(self.project_layer(cond), self.dim, dim=-1)  # (..., dim) each
        return weight * self.norm(x) + bias


class KVCache:
    """Preallocated keys and values of every layer, filled left to right; nothing grows by concatenation.

    k, v: (layers, B, H, max_len, head_dim), allocated at the first write with the keys' dtype and device;
    `length` columns are filled.
    """

    def __init__(self, num_layers: int, batch: int, nhead: int, max_len: int, head_dim: int):
        self.shape = (num_layers, batch, nhead, max_len, head_dim)
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, H, T, Dh) after the filled part; return all keys and values so far (B, H, length+T, Dh)."""
        if self.k is None:
            self.k = k.new_zeros(self.shape)  # (N, B, H, S, Dh)
            self.v = v.new_zeros(self.shape)  # (N, B, H, S, Dh)
        end = self.length + k.shape[2]
        if end > self.shape[3]:
            raise RuntimeError(f"KV cache full: {end} > {self.shape[3]} positions")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class PackedInProjection(nn.Module):
    """`F.linear(x, in_proj_weight, in_proj_bias)` of q, k, v packed as released (3D, D). It owns no weights (their
    names stay `self_attn.in_proj_*`); it is the module an adapter hooks into (see valle/models/adapters.py)."""

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return F.linear(x, weight, bias)  # (B, T, 3D)


class SelfAttention(nn.Module):
    """Multi-head self-attention with the packed in-projection of torch.nn.MultiheadAttention, via SDPA."""

    def __init__(self, dim: int, nhead: int, dropout: float):
        super().__init__()
        if dim % nhead:
            raise ValueError(f"d_model {dim} is not divisible by nhead {nhead}")
        self.nhead = nhead
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.in_proj = PackedInProjection()
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """x (B, T, D); mask broadcastable to (B, H, T, S), True = may attend; with a cache, S = cache.length + T."""
        B, T, D = x.shape
        qkv = self.in_proj(x, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3D)
        q, k, v = qkv.view(B, T, 3, self.nhead, D // self.nhead).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, Dh)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, Dh)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, D))


class TransformerLayer(nn.Module):
    """Pre-norm layer: x + Attn(norm1(x)), then x + FF(norm2(x)); FF is Linear-ReLU-Linear with 4x width."""

    def __init__(self, dim: int, nhead: int, dropout: float, adaptive: bool):
        super().__init__()
        norm = AdaptiveLayerNorm if adaptive else LayerNorm
        self.self_attn = SelfAttention(dim, nhead, dropout)
        self.linear1 = nn.Linear(dim, 4 * dim)
        self.linear2 = nn.Linear(4 * dim, dim)
        self.norm1 = norm(dim)
        self.norm2 = norm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cond: Tensor | None, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.dropout(self.self_attn(self.norm1(x, cond), mask, cache, layer))
        h = self.linear2(self.dropout(F.relu(self.linear1(self.norm2(x, cond)))))
        return x + self.dropout(h)


class TransformerStack(nn.Module):
    """`layers` then a final `norm` (adaptive for the NAR). Keys: `layers.N.*`, `norm.*`.

    `activation_checkpointing`: in training, keep only each layer's input and recompute the layer in the backward
    pass (same RNG state, so dropout and the gradients are the same); less memory for about one more forward.
    """

    def __init__(self, dim: int, nhead: int, num_layers: int, dropout: float, adaptive: bool):
        super().__init__()
        self.activation_checkpointing = False
        self.nhead = nhead
        self.layers = nn.ModuleList(TransformerLayer(dim, nhead, dropout, adaptive) for _ in range(num_layers))
        self.norm = AdaptiveLayerNorm(dim) if adaptive else LayerNorm(dim)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        head_dim = self.layers[0].linear1.in_features // self.nhead
        return KVCache(len(self.layers), batch, self.nhead, max_len, head_dim)

    def forward(
        self, x: Tensor, cond: Tensor | None = None, mask: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """x (B, T, D) -> (B, T, D). With a cache, x holds the T newest positions and the cache advances by T."""
        recompute = self.activation_checkpointing and self.training and cache is None and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute:
                x = checkpoint(layer, x, cond, mask, None, i, use_reentrant=False)
            else:
                x = layer(x, cond, mask, cache, i)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x, cond)


def set_activation_checkpointing(model: nn.Module, on: bool) -> None:
    """Switch activation checkpointing (per transformer layer) on or off in every stack of `model`."""
    for stack in model.modules():
        if isinstance(stack, TransformerStack):
            stack.activation_checkpointing = on


class Transpose(nn.Module):
    """(B, T, D) <-> (B, D, T), for the convolutional text prenet."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)


def text_prenet(dim: int) -> nn.Sequential:
    """Three conv-BN-ReLU-dropout blocks and a linear layer (lifeiteng's optional prenet; keys 1,2,5,6,9,10,14)."""
    blocks: list[nn.Module] = [Transpose()]
    for _ in range(3):
        blocks += [nn.Conv1d(dim, dim, kernel_size=5, padding="same"), nn.BatchNorm1d(dim), nn.ReLU(), nn.Dropout(0.5)]
    return nn.Sequential(*blocks, Transpose(), nn.Linear(dim, dim))


def audio_prenet(dim: int) -> nn.Sequential:
    """Linear bottleneck of width 256 (lifeiteng's optional prenet; keys 0,3,6)."""
    return nn.Sequential(
        nn.Linear(dim, 256), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(256, dim),
    )
