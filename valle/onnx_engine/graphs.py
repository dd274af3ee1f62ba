"""The two graphs exported to ONNX, as torch modules over a VALLE's own submodules (the same weights, the same layers).

- ARGraph: the AR decoder over new positions after a KV cache. The prefill runs it over [text | BOS, prompt codes]
  with an empty cache; every step runs it over one frame with the cache so far. One graph for both keeps the AR
  weights once in the file and once in memory. The cache is the host's buffer (runtime.HostCache, grown 64 columns
  at a time), one tensor pair per layer (keys stored transposed), read in place; the graph returns only the new
  columns, which the host writes into it (growing by concatenation, as a graph would, copied the whole cache at
  every step: a third of the int8 step's time with a 400-column cache).
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


def attention(attn: SelfAttention, x: Tensor, mask: Tensor, past_kt: Tensor | None = None,
              past_v: Tensor | None = None, rows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """SelfAttention over x (B, T, D), after a KV cache it does not copy when given: past keys transposed past_kt
    (B, H, Dh, C) and past values past_v (B, H, C, Dh); mask broadcastable to (B, H, T, C+T), True = may attend
    (unfilled cache columns False; no row all False). Only q is scaled, the keys are made transposed, and the scores
    of the cache and of the new keys are two products joined after them: the cache is read once and neither
    concatenated, transposed nor scaled. rows (B, G): only these positions of x query (mask (B, 1, 1, C+T)).
    -> out (B, T or G, D), the new keys transposed (B, H, Dh, T) and values (B, H, T, Dh).
    """
    B, T, D = x.shape
    qkv = attn.in_proj(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3D)
    q, k, v = qkv.view(B, T, 3, attn.nhead, D // attn.nhead).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
    q = q * (D // attn.nhead) ** -0.5
    if rows is not None:
        q = q.gather(2, rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[3]))  # (B, H, G, Dh)
        T = rows.shape[1]
    kt = k.transpose(2, 3)  # (B, H, Dh, T)
    scores = q @ kt if past_kt is None else torch.cat([q @ past_kt, q @ kt], dim=-1)  # (B, H, T, C+T)
    p = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    if past_v is None:
        out = p @ v  # (B, H, T, Dh)
    else:
        C = past_v.shape[2]
        out = p[..., :C] @ past_v + p[..., C:] @ v
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, D)), kt, v


def layer_forward(layer: TransformerLayer, x: Tensor, mask: Tensor, cond: Tensor | None = None,
                  past_kt: Tensor | None = None, past_v: Tensor | None = None, rows: Tensor | None = None
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """TransformerLayer.forward in eval (no dropout) with `attention` -> x (B, T, D), or (B, G, D) at `rows` (B, G)
    only, and the new keys and values."""
    a, kt, v = attention(layer.self_attn, layer.norm1(x, cond), mask, past_kt, past_v, rows)
    if rows is not None:
        x = x.gather(1, rows[..., None].expand(-1, -1, x.shape[2]))  # (B, G, D)
    x = x + a
    return x + layer.linear2(F.relu(layer.linear1(layer.norm2(x, cond)))), kt, v


class ARGraph(nn.Module):
    """(text_ids, text_langs, text_pos (B, L); audio_ids, audio_pos (B, A); valid (B, C+L+A); the cache per layer:
    keys transposed (B, H, Dh, C), values (B, H, C, Dh)) -> logits (B, V+1) of the frame after the last column, and
    the new columns' keys transposed (B, H, Dh, L+A) and values (B, H, L+A, Dh) per layer.

    The cache is the host's buffer of C columns, filled left to right (valid is False on the unfilled ones); the host
    writes the new columns into it, so no step copies it. The new columns attend as in VALLE.ar_prefill (text to
    text, audio to all text and causally to audio) and to every valid cache column. A step has L = 0 and A = 1."""

    def __init__(self, model: VALLE):
        super().__init__()
        self.model = model

    def forward(self, text_ids: Tensor, text_langs: Tensor, text_pos: Tensor, audio_ids: Tensor, audio_pos: Tensor,
                valid: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        text = m.ar_text_position.at(m.ar_text_embedding(text_ids) + m.ar_language_embedding(text_langs), text_pos)
        audio = m.ar_audio_position.at(m.ar_audio_embedding(audio_ids), audio_pos)
        x = torch.cat([text, audio], dim=1)  # (B, L+A, D)
        new = ar_attention_mask(text_ids.shape[1], audio_ids.shape[1], x.device)  # (L+A, L+A)
        seen = torch.ones(new.shape[0], valid.shape[1] - new.shape[1], dtype=torch.bool, device=x.device)  # (L+A, C)
        mask = torch.cat([seen, new], dim=1) & valid[:, None, None, :]  # (B, 1, L+A, C+L+A)
        present = []
        for i, layer in enumerate(m.ar_decoder.layers):
            x, kt, v = layer_forward(layer, x, mask, None, past[2 * i], past[2 * i + 1])
            present += [kt, v]
        logits = m.ar_predict_layer(m.ar_decoder.norm(x[:, -1])).float()  # (B, V+1)
        return (logits, *present)


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
        mask = key_valid[:, None, None, :]  # (B, 1, 1, L+Y)
        out = [codes[..., 0]]
        for i in range(q - 1):
            h, cond = torch.cat([x, m.nar_audio_position.at(y, audio_pos)], dim=1), m.nar_stage_embeddings[i].weight
            *layers, last = m.nar_decoder.layers
            for layer in layers:
                h = layer_forward(layer, h, mask, cond)[0]  # (B, L+Y, D)
            h = m.nar_decoder.norm(layer_forward(last, h, mask, cond, rows=L + gen_index)[0], cond)  # (B, G, D)
            ids = codes[..., i + 1].scatter(1, gen_index, m.nar_predict_layers[i](h).argmax(-1))  # (B, Y)
            out.append(torch.where(is_gen, ids, codes[..., i + 1]))
            if i < q - 2:
                y = torch.where(grow[..., None], y + emb[i + 1](out[-1]), y)
        return torch.stack(out, dim=-1)  # (B, Y, Q)
