"""The two graphs exported to ONNX, as torch modules over a VALLE's own submodules (the same weights, the same layers).

- ARGraph: the AR decoder over new positions after a KV cache. The prefill runs it over [text | BOS, prompt codes]
  with an empty cache; every step runs it over one frame with the cache so far. One graph for both keeps the AR
  weights once in the file and once in memory. The cache is the host's buffer (runtime.HostCache, grown 64 columns
  at a time), keys and values per layer, read in place; the graph returns only the new columns, which the host
  writes into it (growing by concatenation, as a graph would, copied the whole cache at every step: a third of the
  int8 step's time with a 400-column cache). The int8 export caches the values in 8 bits (`cached_values`): at
  batch 16 the attention's products over an fp32 cache were 44 % of a step, bound by the memory they read.
- NARGraph: codebooks 1..Q-1 of every frame, one stage after the other, as VALLE.generate_nar.

Both run the layers of TransformerLayer with `attention` below in place of SelfAttention's SDPA, whose export
scales the keys as well as the queries and guards every score against NaN.

Positions are inputs (the host knows them; left padding makes them differ per row) and their sinusoids are computed
in the graph (SinePositionalEmbedding.at), so no position table is stored and no length bound is baked in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from valle.models.layers import SelfAttention, TransformerLayer
from valle.models.valle import VALLE, ar_attention_mask


class MatMulInteger(torch.autograd.Function):
    """a (..., M, K) uint8 @ b (..., K, N) int8 -> (..., M, N) int32, exported as ONNX's MatMulInteger (exact here
    in float64: the sums stay far below 2**53)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        return (a.double() @ b.double()).int()

    @staticmethod
    def symbolic(g, a, b):
        return g.op("MatMulInteger", a, b)


def quantize_values(v: Tensor) -> tuple[Tensor, Tensor]:
    """v (B, H, T, Dh) -> int8 (B, H, T, Dh) in [-63, 63] and one scale per column (B, H, T): v ~ q * scale. Seven
    bits, so that the product with 8-bit weights (cached_values) never saturates the CPU's 16-bit pairwise sums
    (vpmaddubsw: 2 x 255 x 63 < 2**15)."""
    scale = v.abs().amax(-1).clamp(min=1e-30) / 63  # (B, H, T)
    return torch.round(v / scale[..., None]).to(torch.int8), scale


def cached_values(p: Tensor, values: Tensor, scales: Tensor) -> Tensor:
    """The attention's sum over 8-bit cached values: p (B, H, T, C) the weights of the C cache columns, values
    (B, H, C, Dh) int8 and scales (B, H, C) as quantize_values made them -> (B, H, T, Dh) ~ p @ (values * scales).
    The weights times the columns' scales are quantized to uint8 per query (scale max / 255) and multiplied with the
    int8 values in one integer product, which reads a quarter of the bytes of an fp32 cache."""
    w = p * scales[:, :, None, :]  # (B, H, T, C)
    w_scale = w.amax(-1, keepdim=True).clamp(min=1e-30) / 255  # (B, H, T, 1)
    return MatMulInteger.apply(torch.round(w / w_scale).to(torch.uint8), values).float() * w_scale


def attention(attn: SelfAttention, x: Tensor, bias: Tensor, past: tuple[Tensor, ...] = (),
              rows: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """SelfAttention over x (B, T, D), after a KV cache it does not copy when given: `past` = keys (B, H, C, Dh) and
    values (B, H, C, Dh) in fp32, or keys, values in int8 and their scales (B, H, C) (quantize_values); bias
    broadcastable to (B, H, T, C+T), 0 where a query may attend and -inf where not (unfilled cache columns -inf; no
    row all -inf). Only q is scaled, and the scores of the cache and of the new keys are two products joined after
    them: the cache is read once and neither concatenated nor scaled. rows (B, G): only these positions of x query
    (bias (B, 1, 1, C+T)).
    -> out (B, T or G, D), and the new columns in the cache's form: keys and values (B, H, T, Dh), with 8-bit values
    their scales (B, H, T).
    """
    B, T, D = x.shape
    qkv = attn.in_proj(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3D)
    q, k, v = qkv.view(B, T, 3, attn.nhead, D // attn.nhead).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
    q = q * (D // attn.nhead) ** -0.5
    if rows is not None:
        q = q.gather(2, rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[3]))  # (B, H, G, Dh)
        T = rows.shape[1]
    scores = q @ k.transpose(2, 3)  # (B, H, T, T_new)
    if past:  # the cache's keys as the left operand: a matrix times a few vectors per row and head
        scores = torch.cat([(past[0] @ q.transpose(2, 3)).transpose(2, 3), scores], dim=-1)  # (B, H, T, C+T_new)
    p = (scores + bias).softmax(-1)
    if not past:
        out = p @ v  # (B, H, T, Dh)
    else:
        C = past[0].shape[2]
        out = p[..., C:] @ v + (p[..., :C] @ past[1] if len(past) == 2 else cached_values(p[..., :C], *past[1:]))
    new = (k, v) if len(past) < 3 else (k, *quantize_values(v))
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, D)), new


def layer_forward(layer: TransformerLayer, x: Tensor, bias: Tensor, cond: Tensor | None = None,
                  past: tuple[Tensor, ...] = (), rows: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """TransformerLayer.forward in eval (no dropout) with `attention` -> x (B, T, D), or (B, G, D) at `rows` (B, G)
    only, and the new columns of the cache."""
    a, new = attention(layer.self_attn, layer.norm1(x, cond), bias, past, rows)
    if rows is not None:
        x = x.gather(1, rows[..., None].expand(-1, -1, x.shape[2]))  # (B, G, D)
    x = x + a
    return x + layer.linear2(F.relu(layer.linear1(layer.norm2(x, cond)))), new


def additive(mask: Tensor) -> Tensor:
    """A bool mask (True = may attend) as the scores' bias: 0 or -inf (one Where per graph, an Add per layer)."""
    return torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))


class ARGraph(nn.Module):
    """(text_ids, text_langs, text_pos (B, L); audio_ids, audio_pos (B, A); valid (B, C+L+A); the cache per layer:
    keys (B, H, C, Dh) and values (B, H, C, Dh), fp32, or with int8_values int8 values and their scales (B, H, C))
    -> logits (B, V+1) of the frame after the last column, and the new columns per layer in the cache's form (keys,
    values (B, H, L+A, Dh), and the values' scales (B, H, L+A)).

    The cache is the host's buffer of C columns, filled left to right (valid is False on the unfilled ones); the host
    writes the new columns into it, so no step copies it. The new columns attend as in VALLE.ar_prefill (text to
    text, audio to all text and causally to audio) and to every valid cache column; their own values are used in
    fp32 and cached in 8 bits. A step has L = 0 and A = 1. The last layer queries at the last column only (the
    others' outputs are never read: 7 % of a prompt pass's work)."""

    def __init__(self, model: VALLE, int8_values: bool = False):
        super().__init__()
        self.model, self.per_layer = model, 3 if int8_values else 2

    def forward(self, text_ids: Tensor, text_langs: Tensor, text_pos: Tensor, audio_ids: Tensor, audio_pos: Tensor,
                valid: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        m, n = self.model, self.per_layer
        text = m.ar_text_position.at(m.ar_text_embedding(text_ids) + m.ar_language_embedding(text_langs), text_pos)
        audio = m.ar_audio_position.at(m.ar_audio_embedding(audio_ids), audio_pos)
        x = torch.cat([text, audio], dim=1)  # (B, L+A, D)
        new = ar_attention_mask(text_ids.shape[1], audio_ids.shape[1], x.device)  # (L+A, L+A)
        seen = torch.ones(new.shape[0], valid.shape[1] - new.shape[1], dtype=torch.bool, device=x.device)  # (L+A, C)
        bias = additive(torch.cat([seen, new], dim=1) & valid[:, None, None, :])  # (B, 1, L+A, C+L+A)
        last = torch.full_like(audio_ids[:, :1], x.shape[1] - 1)  # (B, 1): A >= 1 always
        *layers, final = m.ar_decoder.layers
        present = []
        for i, layer in enumerate(layers):
            x, columns = layer_forward(layer, x, bias, past=past[n * i : n * i + n])
            present += columns
        x, columns = layer_forward(final, x, bias[:, :, -1:], past=past[-n:], rows=last)  # (B, 1, D)
        logits = m.ar_predict_layer(m.ar_decoder.norm(x[:, 0])).float()  # (B, V+1)
        return (logits, *present, *columns)


class NARGraph(nn.Module):
    """(text_ids, text_langs (B, L) right-padded; codes (B, Y, Q) with every codebook of the prompt frames and
    codebook 0 of the generated ones; is_prompt, is_gen (B, Y); key_valid (B, L+Y); gen_index (B, G): the generated
    frames of each row, its last one repeated after them) -> codes (B, Y, Q), the generated frames' codebooks
    1..Q-1 filled greedily. The last layer of each stage queries at the generated frames only (the others' outputs
    are never read): 5 % of the NAR's work with a 225-frame prompt and 150 generated frames."""

    def __init__(self, model: VALLE):
        super().__init__()
        self.model = model

    def forward(self, text_ids: Tensor, text_langs: Tensor, codes: Tensor, is_prompt: Tensor, is_gen: Tensor,
                key_valid: Tensor, gen_index: Tensor) -> Tensor:
        m = self.model
        q, mode, L = m.config.num_quantizers, m.config.prefix_mode, text_ids.shape[1]
        text_pos = torch.arange(L, device=codes.device).expand_as(text_ids)  # (B, L)
        audio_pos = torch.arange(codes.shape[1], device=codes.device).expand_as(is_gen)  # (B, Y)
        x = m.nar_text_position.at(m.nar_text_embedding(text_ids) + m.nar_language_embedding(text_langs), text_pos)
        emb = m.nar_audio_embeddings
        y = emb[0](codes[..., 0])  # (B, Y, D)
        if mode != 0:
            for j in range(1, q):
                y = torch.where(is_prompt[..., None], y + emb[j](codes[..., j]), y)
        grow = (is_prompt | is_gen) if mode == 0 else is_gen  # frames that take each new codebook
        bias = additive(key_valid[:, None, None, :])  # (B, 1, 1, L+Y)
        out = [codes[..., 0]]
        for i in range(q - 1):
            h, cond = torch.cat([x, m.nar_audio_position.at(y, audio_pos)], dim=1), m.nar_stage_embeddings[i].weight
            *layers, last = m.nar_decoder.layers
            for layer in layers:
                h = layer_forward(layer, h, bias, cond)[0]  # (B, L+Y, D)
            h = m.nar_decoder.norm(layer_forward(last, h, bias, cond, rows=L + gen_index)[0], cond)  # (B, G, D)
            ids = codes[..., i + 1].scatter(1, gen_index, m.nar_predict_layers[i](h).argmax(-1))  # (B, Y)
            out.append(torch.where(is_gen, ids, codes[..., i + 1]))
            if i < q - 2:
                y = torch.where(grow[..., None], y + emb[i + 1](out[-1]), y)
        return torch.stack(out, dim=-1)  # (B, Y, Q)
