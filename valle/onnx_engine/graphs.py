"""The two graphs exported to ONNX, as torch modules over a VALLE's own submodules (the same weights, the same layers).

- ARGraph: the AR decoder over new positions after a KV cache. The prefill runs it over [text | BOS, prompt codes]
  with an empty cache; every step runs it over one frame with the cache so far. One graph for both keeps the AR
  weights once in the file and once in memory. The cache goes in and out as one tensor pair per layer, grown by
  the new columns (the host feeds each step's output to the next step).
- NARGraph: codebooks 1..Q-1 of every frame, one stage after the other, as VALLE.generate_nar.

Positions are inputs (the host knows them; left padding makes them differ per row) and their sinusoids are computed
in the graph (SinePositionalEmbedding.at), so no position table is stored and no length bound is baked in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from valle.models.valle import VALLE, ar_attention_mask


class GrowingCache:
    """The KV cache as the exported AR graph sees it: past keys/values per layer (B, H, S, Dh) in, past + new out."""

    def __init__(self, past: list[tuple[Tensor, Tensor]]):
        self.past = past
        self.present: list[tuple[Tensor, Tensor]] = []
        self.length = 0  # advanced by TransformerStack; unused here

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """k, v (B, H, T, Dh) -> all keys and values of this layer (B, H, S+T, Dh)."""
        past_k, past_v = self.past[layer]
        self.present.append((torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)))
        return self.present[-1]


class ARGraph(nn.Module):
    """(text_ids, text_langs, text_pos (B, L); audio_ids, audio_pos (B, A); valid (B, S+L+A); past k, v per layer
    (B, H, S, Dh)) -> logits (B, V+1) of the frame after the last column, present k, v per layer (B, H, S+L+A, Dh).

    The new columns attend as in VALLE.ar_prefill (text to text, audio to all text and causally to audio) and to
    every valid past column. A step has L = 0 and A = 1."""

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
        seen = torch.ones(new.shape[0], valid.shape[1] - new.shape[1], dtype=torch.bool, device=x.device)  # (L+A, S)
        mask = torch.cat([seen, new], dim=1) & valid[:, None, None, :]  # (B, 1, L+A, S+L+A)
        cache = GrowingCache([(past[2 * i], past[2 * i + 1]) for i in range(len(m.ar_decoder.layers))])
        h = m.ar_decoder(x, mask=mask, cache=cache)  # (B, L+A, D)
        logits = m.ar_predict_layer(h[:, -1]).float()  # (B, V+1)
        return (logits, *(t for kv in cache.present for t in kv))


class NARGraph(nn.Module):
    """(text_ids, text_langs (B, L) right-padded; codes (B, Y, Q) with every codebook of the prompt frames and
    codebook 0 of the generated ones; is_prompt, is_gen (B, Y); key_valid (B, L+Y)) -> codes (B, Y, Q), the
    generated frames' codebooks 1..Q-1 filled greedily."""

    def __init__(self, model: VALLE):
        super().__init__()
        self.model = model

    def forward(self, text_ids: Tensor, text_langs: Tensor, codes: Tensor, is_prompt: Tensor, is_gen: Tensor,
                key_valid: Tensor) -> Tensor:
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
            h = m.nar_decoder(torch.cat([x, m.nar_audio_position.at(y, audio_pos)], dim=1),
                              cond=m.nar_stage_embeddings[i].weight, mask=mask)  # (B, L+Y, D)
            ids = m.nar_predict_layers[i](h[:, L:]).argmax(-1)  # (B, Y)
            out.append(torch.where(is_gen, ids, codes[..., i + 1]))
            if i < q - 2:
                y = torch.where(grow[..., None], y + emb[i + 1](out[-1]), y)
        return torch.stack(out, dim=-1)  # (B, Y, Q)
