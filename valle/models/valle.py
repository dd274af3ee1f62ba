"""VALL-E X: an autoregressive (AR) model of codebook 0 and a non-autoregressive (NAR) model of codebooks 1-7.

The parameter names and shapes are the released checkpoint's. Facts of the released model kept here:
- text: token embedding + language embedding (per token), then sinusoidal positions with a scalar `alpha`;
- AR: [text | BOS, prompt codes, generated codes]; text attends to text only (both ways), audio attends to
  all text and causally to audio; audio ids 0-1023 codes, 1024 EOS, 1025 BOS; the head predicts 0-1024;
- NAR: one bidirectional stack shared by the 7 codebooks, adaptive layer norm conditioned on the codebook embedding
  (`nar_stage_embeddings`, the released key name); codebook j sees the sum of the embeddings of codebooks < j
  (all 8 for prompt frames in prefix mode 1 and 2) and predicts codebook j with `nar_predict_layers[j-1]`, tied to
  `nar_audio_embeddings[j+1]` when share_embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from valle.config import NAR_PREFIX_RANGES, ModelConfig, Sampling
from valle.models.continuous import ARRows
from valle.models.decoding import CHECK_EVERY, ARState, decode, static_step
from valle.models.layers import (
    SinePositionalEmbedding,
    TokenEmbedding,
    TransformerStack,
    audio_prenet,
    text_prenet,
)

IGNORE = -100  # target id left out of the loss
MAX_PREFIX_FRAMES = 225  # 3 s at 75 Hz: longest NAR training prefix (prefix modes 1 and 2)
FRAMES_PER_TEXT_TOKEN = 16  # default AR stop: this many generated frames per text token (prompt text included)


def sample(logits: Tensor, s: Sampling, generator: torch.Generator | None = None) -> Tensor:
    """logits (B, V) -> ids (B,): temperature, then top-k (ties kept), then top-p (nucleus), then a draw."""
    if s.top_k == 1:
        return logits.argmax(-1)
    if s.temperature != 1.0:
        logits = logits / s.temperature
    if s.top_k > 0:
        kth = logits.topk(min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        beyond = sorted_logits.softmax(-1).cumsum(-1) > s.top_p  # (B, V)
        beyond = torch.cat([torch.zeros_like(beyond[:, :1]), beyond[:, :-1]], dim=1)  # keep the first one past top_p
        logits = logits.masked_fill(beyond.scatter(1, order, beyond), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def nar_items(ar_codes: list[Tensor], prompt_text_lens: list[int], prefix_mode: int) -> tuple[list[int], list[int]]:
    """The items whose AR codes the NAR completes (those with any), and how many text tokens each leaves out
    (its prompt's, in prefix mode 2)."""
    todo = [i for i, c in enumerate(ar_codes) if c.numel() > 0]
    return todo, [prompt_text_lens[i] if prefix_mode == 2 else 0 for i in todo]


def frame_limits(text: list[Tensor], sampling: Sampling) -> list[int]:
    """The most frames the AR generates for each item of text ids (L_i,) (prompt text included): `max_frames`, by
    default 16 per text token."""
    return [sampling.max_frames or FRAMES_PER_TEXT_TOKEN * t.shape[0] for t in text]


def ar_attention_mask(text_len: int, audio_len: int, device: torch.device) -> Tensor:
    """(S, S) bool, S = text_len + audio_len, True = may attend: text sees text; audio sees text and earlier audio."""
    idx = torch.arange(text_len + audio_len, device=device)
    q, k = idx[:, None], idx[None, :]
    return (k < text_len) | ((q >= text_len) & (k <= q))


def pad_items(items: list[Tensor], left: bool) -> tuple[Tensor, Tensor]:
    """Items (n_i, ...) -> zero-padded (B, N, ...) aligned left or right, and valid (B, N) bool."""
    n = max(t.shape[0] for t in items)
    out = items[0].new_zeros((len(items), n) + tuple(items[0].shape[1:]))  # (B, N, ...)
    valid = torch.zeros(len(items), n, dtype=torch.bool, device=items[0].device)  # (B, N)
    for b, t in enumerate(items):
        where = slice(n - t.shape[0], n) if left else slice(0, t.shape[0])
        out[b, where] = t
        valid[b, where] = True
    return out, valid


def top10_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """logits (N, V), targets (N,) -> share of targets among the 10 highest logits (0 when N is 0)."""
    if targets.numel() == 0:
        return logits.new_zeros(())
    top = logits.topk(min(10, logits.shape[-1]), dim=-1).indices  # (N, 10)
    return (top == targets[:, None]).any(-1).float().mean()


class VALLE(nn.Module):
    """Both halves of VALL-E X. Training: `model(batch, half="ar"|"nar")`. Inference: `generate`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        if c.prefix_mode not in (0, 1, 2):
            raise ValueError(f"prefix_mode must be 0, 1 or 2, got {c.prefix_mode}")
        if c.prefix_range not in NAR_PREFIX_RANGES:
            raise ValueError(f"prefix_range must be one of {', '.join(NAR_PREFIX_RANGES)}, got {c.prefix_range!r}")
        self.config = c
        d, v, q = c.d_model, c.audio_vocab_size, c.num_quantizers
        self.eos, self.bos = v, v + 1
        # Registration order = the released state dict's key order.
        self.ar_text_embedding = TokenEmbedding(d, c.text_vocab_size)
        self.nar_text_embedding = TokenEmbedding(d, c.text_vocab_size)
        self.ar_audio_embedding = TokenEmbedding(d, v + 2)  # codes, EOS, BOS
        if c.add_prenet:
            self.ar_text_prenet = text_prenet(d)
            self.ar_audio_prenet = audio_prenet(d)
        self.ar_text_position = SinePositionalEmbedding(d, c.dropout, train_alpha=True)
        self.ar_audio_position = SinePositionalEmbedding(d, c.dropout, train_alpha=True)
        self.ar_decoder = TransformerStack(d, c.nhead, c.num_layers, c.dropout, adaptive=False)
        self.ar_predict_layer = nn.Linear(d, v + 1, bias=False)  # codes, EOS
        # NAR: codebook 0 has one more row (a masked position in prefix mode 2).
        self.nar_audio_embeddings = nn.ModuleList(
            [TokenEmbedding(d, v + 1)] + [TokenEmbedding(d, v) for _ in range(q - 1)]
        )
        if c.add_prenet:
            self.nar_text_prenet = text_prenet(d)
            self.nar_audio_prenet = audio_prenet(d)
        self.nar_text_position = SinePositionalEmbedding(d, 0.0, train_alpha=False)
        self.nar_audio_position = SinePositionalEmbedding(d, c.dropout, train_alpha=False)
        self.nar_decoder = TransformerStack(d, c.nhead, c.num_layers, c.dropout, adaptive=True)
        self.nar_predict_layers = nn.ModuleList(nn.Linear(d, v, bias=False) for _ in range(q - 1))
        self.nar_stage_embeddings = nn.ModuleList(TokenEmbedding(d, 1) for _ in range(q - 1))
        if c.share_embedding:
            for j in range(q - 2):
                self.nar_predict_layers[j].weight = self.nar_audio_embeddings[j + 2].word_embeddings.weight
        self.ar_language_embedding = TokenEmbedding(d, c.num_languages)
        self.nar_language_embedding = TokenEmbedding(d, c.num_languages)
        self._fixed = {n for n, p in self.named_parameters() if not p.requires_grad}  # the NAR position alphas

    # ------------------------------------------------------------------ shared pieces

    @property
    def device(self) -> torch.device:
        """Where the weights are (both halves: after `place`, the AR half's)."""
        return self.ar_predict_layer.weight.device

    @staticmethod
    def half_of(name: str) -> str:
        """The half ("ar" or "nar") that a parameter or module name belongs to: every name starts with it."""
        return name.split("_", 1)[0]

    def half_named_parameters(self, half: str) -> list[tuple[str, nn.Parameter]]:
        """The trainable (name, parameter) pairs of the AR ("ar") or the NAR ("nar") half; tied tensors once."""
        if half not in ("ar", "nar"):
            raise ValueError(f"half must be 'ar' or 'nar', got {half!r}")
        return [(n, p) for n, p in self.named_parameters() if self.half_of(n) == half and n not in self._fixed]

    def place(self, device: torch.device | str, halves: tuple[str, ...] = ("ar", "nar"),
              elsewhere: torch.device | str = "cpu") -> VALLE:
        """The modules of `halves` on `device`, the other half's `elsewhere` (host memory). Training one half on a
        GPU thus leaves the other (0.65 GB at full size) on the CPU; `place(device)` brings both together."""
        for name, child in self.named_children():
            child.to(device if self.half_of(name) in halves else elsewhere)
        return self

    def _prenet(self, name: str, x: Tensor) -> Tensor:
        net = getattr(self, name, None)
        return x if net is None else net(x)

    def embed_text(self, half: str, ids: Tensor, langs: Tensor) -> Tensor:
        """ids, langs (B, L) -> (B, L, D): token + language embedding, prenet, positions (for half "ar" or "nar")."""
        x = getattr(self, f"{half}_text_embedding")(ids) + getattr(self, f"{half}_language_embedding")(langs)
        return getattr(self, f"{half}_text_position")(self._prenet(f"{half}_text_prenet", x))

    def embed_ar_audio(self, ids: Tensor, positions: Tensor | None = None, num_positions: int | None = None) -> Tensor:
        """AR audio ids (B, T) -> (B, T, D) with positions (default 0..T-1)."""
        x = self._prenet("ar_audio_prenet", self.ar_audio_embedding(ids))
        return self.ar_audio_position(x, positions, num_positions)

    # ------------------------------------------------------------------ training

    def forward(self, batch: dict, half: str = "ar", codebook: int | None = None) -> dict:
        """Loss of one half on a padded batch -> {"loss": mean CE, "top10_acc", "num_frames": terms in the mean}.

        batch: text_tokens (B, L), text_lens (B,), text_langs (B, L), codes (B, T, Q), code_lens (B,).
        codebook: the codebook the NAR predicts (1..Q-1); by default drawn with torch's RNG.
        """
        if half == "ar":
            return self._ar_loss(batch)
        if half == "nar":
            return self._nar_loss(batch, codebook)
        raise ValueError(f"half must be 'ar' or 'nar', got {half!r}")

    def _unpack(self, batch: dict, half: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """-> embedded text (B, L, D), text_valid (B, L), codes (B, T, Q) with padding zeroed, code_lens, code_valid."""
        text, langs, codes = batch["text_tokens"], batch["text_langs"], batch["codes"].long()
        dev = text.device
        text_valid = torch.arange(text.shape[1], device=dev) < batch["text_lens"].to(dev)[:, None]  # (B, L)
        code_lens = batch["code_lens"].to(dev)
        code_valid = torch.arange(codes.shape[1], device=dev) < code_lens[:, None]  # (B, T)
        codes = codes.masked_fill(~code_valid[..., None], 0)  # (B, T, Q): padding -> a valid id
        return self.embed_text(half, text, langs), text_valid, codes, code_lens, code_valid

    def _ar_loss(self, batch: dict) -> dict:
        x, text_valid, codes, code_lens, _ = self._unpack(batch, "ar")  # x (B, L, D), codes (B, T, Q)
        L, T = x.shape[1], codes.shape[1]
        pos = torch.arange(T + 1, device=x.device)
        inputs = F.pad(codes[..., 0], (1, 0), value=self.bos)  # (B, T+1): BOS, c_0 .. c_{T-1}
        targets = F.pad(codes[..., 0], (0, 1), value=0)  # (B, T+1): c_0 .. c_{T-1}, then EOS at each length
        targets = torch.where(pos < code_lens[:, None], targets, self.eos)
        targets = targets.masked_fill(pos > code_lens[:, None], IGNORE)
        key_valid = torch.cat([text_valid, pos <= code_lens[:, None]], dim=1)  # (B, S)
        mask = ar_attention_mask(L, T + 1, x.device) & key_valid[:, None, None, :]  # (B, 1, S, S)
        h = self.ar_decoder(torch.cat([x, self.embed_ar_audio(inputs)], dim=1), mask=mask)[:, L:]  # (B, T+1, D)
        keep = targets != IGNORE
        logits = self.ar_predict_layer(h[keep])  # (N, V+1): real frames and one EOS per utterance
        tgt = targets[keep]
        is_code = tgt != self.eos  # top-10 accuracy over codes, as lifeiteng reports it
        return {
            "loss": F.cross_entropy(logits, tgt),
            "top10_acc": top10_accuracy(logits.detach()[is_code], tgt[is_code]),
            "num_frames": int(tgt.numel()),
        }

    def _nar_loss(self, batch: dict, codebook: int | None) -> dict:
        q, mode = self.config.num_quantizers, self.config.prefix_mode
        k = int(torch.randint(1, q, ())) if codebook is None else codebook  # the codebook predicted
        if not 1 <= k < q:
            raise ValueError(f"codebook must be in 1..{q - 1}, got {k}")
        x, text_valid, codes, code_lens, code_valid = self._unpack(batch, "nar")
        B, L = x.shape[0], x.shape[1]
        emb = self.nar_audio_embeddings
        y = emb[0](codes[..., 0])  # (B, T, D)
        for j in range(1, k):
            y = y + emb[j](codes[..., j])
        targets = codes[..., k].masked_fill(~code_valid, IGNORE)  # (B, T)
        prefix, key_valid = 0, torch.cat([text_valid, code_valid], dim=1)  # (B, L+T)
        if mode == 1:  # the first `prefix` frames of each utterance, all codebooks, are the prompt
            low = int(0.25 * int(code_lens.min()))
            first = 0 if self.config.prefix_range == "released" else low  # [0, 2 low) as released, or [low, 2 low)
            prefix = min(int(torch.randint(first, 2 * low, ())) if low > 0 else 0, MAX_PREFIX_FRAMES)
            head = y[:, :prefix]
            for j in range(k, q):
                head = head + emb[j](codes[:, :prefix, j])
            y = torch.cat([head, y[:, prefix:]], dim=1)
            targets = targets[:, prefix:]
        elif mode == 2:  # a random segment of each utterance, all codebooks, is prepended as the prompt
            prefix = min(MAX_PREFIX_FRAMES, int(0.25 * int(code_lens.min())))
            start = (torch.rand(B, device=x.device) * (code_lens - prefix + 1)).long()  # (B,)
            seg = start[:, None] + torch.arange(prefix, device=x.device)  # (B, P)
            prompt = codes.gather(1, seg[..., None].expand(-1, -1, q))  # (B, P, Q)
            head = emb[0](prompt[..., 0])
            for j in range(1, q):
                head = head + emb[j](prompt[..., j])
            y = torch.cat([head, y], dim=1)  # (B, P+T, D)
            in_seg = torch.zeros_like(code_valid).scatter(1, seg, True)  # (B, T)
            targets = targets.masked_fill(in_seg, IGNORE)
            key_valid = torch.cat([text_valid, torch.ones_like(seg, dtype=torch.bool), code_valid], dim=1)
        y = self.nar_audio_position(self._prenet("nar_audio_prenet", y))
        cond = self.nar_stage_embeddings[k - 1].weight  # (1, D)
        h = self.nar_decoder(torch.cat([x, y], dim=1), cond=cond, mask=key_valid[:, None, None, :])
        h = h[:, L + prefix :]  # (B, T', D): the frames that are predicted
        keep = targets != IGNORE
        logits = self.nar_predict_layers[k - 1](h[keep])  # (N, V)
        tgt = targets[keep]
        return {
            "loss": F.cross_entropy(logits, tgt),
            "top10_acc": top10_accuracy(logits.detach(), tgt),
            "num_frames": int(tgt.numel()),
        }

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(
        self,
        text: list[Tensor],
        langs: list[Tensor],
        prompts: list[Tensor],
        prompt_text_lens: list[int],
        sampling: Sampling = Sampling(),
        use_cache: bool = True,
        decode_mode: str = "eager",
    ) -> list[Tensor]:
        """AR then NAR for a batch of items -> codes (T_i, Q) of the generated frames of each item.

        text[i] (L_i,): prompt text ids followed by the target text ids; langs[i] (L_i,): their language ids;
        prompts[i] (Tp_i, Q): prompt codes (Tp_i may be 0); prompt_text_lens[i]: how many ids of text[i] are prompt.
        sampling: how the AR picks codes and how long it runs; use_cache, decode_mode: how the AR steps run
        (see generate_ar).
        """
        c0 = self.generate_ar(text, langs, prompts, sampling=sampling, use_cache=use_cache, decode_mode=decode_mode)
        return self.generate_nar(text, langs, prompts, prompt_text_lens, c0)

    @torch.no_grad()
    def generate_ar(
        self,
        text: list[Tensor],
        langs: list[Tensor],
        prompts: list[Tensor],
        sampling: Sampling = Sampling(),
        use_cache: bool = True,
        decode_mode: str = "eager",
        check_every: int = CHECK_EVERY,
    ) -> list[Tensor]:
        """Codebook 0 of the generated frames, (T_i,) per item.

        Item i stops at EOS or after `sampling.max_frames` frames (default 16 x L_i, L_i counting the prompt
        text); EOS is not allowed before `sampling.min_frames`; the draws use `sampling.seed` when it is set.
        Items are padded on the left of their text and of their audio part, so every item writes its next frame
        to the same column of a preallocated KV cache; padding is masked.
        With the cache, every step has static shapes (valle.models.decoding): `decode_mode` "eager", "cudagraph"
        or "inductor", and the host checks for the end every `check_every` steps. Without it, the whole sequence
        is recomputed at every step (the baseline the cache is measured against).
        """
        seq, valid, text_len, next_pos = self.ar_inputs(text, langs, prompts)
        limits = frame_limits(text, sampling)
        generator = None if sampling.seed is None else torch.Generator(seq.device).manual_seed(sampling.seed)
        if not use_cache:
            return self._ar_recompute(seq, valid, next_pos, text_len, limits, sampling, generator)
        logits, state = self.ar_prefill(seq, valid, text_len, next_pos, max(limits))
        return decode(static_step(self, state, decode_mode), logits, limits, lambda lg: sample(lg, sampling, generator),
                      sampling.min_frames, check_every=check_every)

    def ar_rows(self) -> ARRows:
        """The AR's rows for continuous batching (valle.serve.engine): items join and leave at step boundaries."""
        return ARRows(self)

    def ar_inputs(self, text: list[Tensor], langs: list[Tensor], prompts: list[Tensor]
                  ) -> tuple[Tensor, Tensor, int, Tensor]:
        """The AR's input before the first generated frame: [text | BOS, prompt codes] of every item, both parts
        padded on the left -> embeddings (B, S0, D), valid (B, S0), the padded text length, and the audio position
        of each item's next frame (B,)."""
        text_x = [self.embed_text("ar", t[None], lg[None])[0] for t, lg in zip(text, langs)]  # (L_i, D)
        audio_ids = [F.pad(p[:, 0], (1, 0), value=self.bos) for p in prompts]  # (A_i,): BOS, prompt codes
        audio_x = [self.embed_ar_audio(a[None])[0] for a in audio_ids]  # (A_i, D)
        xs, text_valid = pad_items(text_x, left=True)  # (B, Lmax, D)
        ys, audio_valid = pad_items(audio_x, left=True)  # (B, Amax, D)
        seq, valid = torch.cat([xs, ys], dim=1), torch.cat([text_valid, audio_valid], dim=1)  # (B, S0, D), (B, S0)
        next_pos = torch.tensor([a.shape[0] for a in audio_ids], device=seq.device)  # (B,)
        return seq, valid, xs.shape[1], next_pos

    def ar_prefill(self, seq: Tensor, valid: Tensor, text_len: int, next_pos: Tensor, steps: int
                   ) -> tuple[Tensor, ARState]:
        """Run the AR over `ar_inputs` into a KV cache with room for `steps` more frames -> logits (B, V+1) of the
        first frame, and the state the static steps (valle.models.decoding) continue from."""
        prompt_len = seq.shape[1] - text_len
        mask = ar_attention_mask(text_len, prompt_len, seq.device) & valid[:, None, None, :]  # (B, 1, S0, S0)
        cache = self.ar_decoder.new_cache(seq.shape[0], seq.shape[1] + steps)
        self.ar_audio_position.table(prompt_len + steps, like=seq)  # every position a step reads, before capture
        logits = self.ar_predict_layer(self.ar_decoder(seq, mask=mask, cache=cache)[:, -1]).float()  # (B, V+1)
        state = ARState(cache.k, cache.v, valid, next_pos, column=seq.shape[1], num_positions=prompt_len + steps)
        return logits, state

    def _ar_recompute(self, seq: Tensor, valid: Tensor, next_pos: Tensor, text_len: int, limits: list[int],
                      sampling: Sampling, generator: torch.Generator | None) -> list[Tensor]:
        """AR decoding without a cache: the whole sequence (B, S, D) through the decoder at every step;
        finished items leave the batch."""
        mask = ar_attention_mask(text_len, seq.shape[1] - text_len, seq.device)
        logits = self.ar_predict_layer(self.ar_decoder(seq, mask=mask & valid[:, None, None, :])[:, -1]).float()
        out: list[list[int]] = [[] for _ in limits]
        active = list(range(len(limits)))  # batch row r holds item active[r]
        for t in range(max(limits)):
            if t < sampling.min_frames:
                logits[:, self.eos] = float("-inf")
            ids = sample(logits, sampling, generator)  # (b,)
            keep = []
            for r, (i, token) in enumerate(zip(active, ids.tolist())):
                if token != self.eos:
                    out[i].append(token)
                    if len(out[i]) < limits[i]:
                        keep.append(r)
            if not keep:
                break
            if len(keep) < len(active):  # drop finished rows from the batch
                rows = torch.tensor(keep, device=seq.device)
                ids, next_pos, valid, seq = ids[rows], next_pos[rows], valid[rows], seq[rows]
                active = [active[r] for r in keep]
            x = self.embed_ar_audio(ids[:, None], next_pos[:, None], int(next_pos.max()) + 1)  # (b, 1, D)
            seq, valid = torch.cat([seq, x], dim=1), F.pad(valid, (0, 1), value=True)
            mask = ar_attention_mask(text_len, seq.shape[1] - text_len, seq.device)
            logits = self.ar_predict_layer(self.ar_decoder(seq, mask=mask & valid[:, None, None, :])[:, -1]).float()
            next_pos = next_pos + 1
        return [torch.tensor(o, dtype=torch.long, device=seq.device) for o in out]

    @torch.no_grad()
    def generate_nar(
        self,
        text: list[Tensor],
        langs: list[Tensor],
        prompts: list[Tensor],
        prompt_text_lens: list[int],
        ar_codes: list[Tensor],
    ) -> list[Tensor]:
        """Codebooks 1..Q-1 for the AR output (T_i,) of each item -> codes (T_i, Q); greedy, as the reference.

        The sequence is [text | prompt frames (all codebooks) | generated frames]; in prefix mode 2 the prompt's
        text is left out (it was trained with prompts cut from the utterance itself).
        """
        q, mode = self.config.num_quantizers, self.config.prefix_mode
        result = [c.new_zeros(0, q) for c in ar_codes]
        todo, skip = nar_items(ar_codes, prompt_text_lens, mode)
        if not todo:
            return result
        text_x = [self.embed_text("nar", text[i][s:][None], langs[i][s:][None])[0] for i, s in zip(todo, skip)]
        xs, text_valid = pad_items(text_x, left=False)  # (B, L, D)
        frames = [torch.cat([prompts[i], F.pad(ar_codes[i][:, None], (0, q - 1))]) for i in todo]  # (Tp+T, Q)
        codes, audio_valid = pad_items(frames, left=False)  # (B, Y, Q)
        tp = torch.tensor([prompts[i].shape[0] for i in todo], device=codes.device)  # (B,)
        col = torch.arange(codes.shape[1], device=codes.device)
        is_prompt = (col < tp[:, None])[..., None]  # (B, Y, 1)
        is_gen = audio_valid & ~is_prompt[..., 0]  # (B, Y)
        emb = self.nar_audio_embeddings
        y = emb[0](codes[..., 0])  # (B, Y, D)
        if mode != 0:
            for j in range(1, q):
                y = torch.where(is_prompt, y + emb[j](codes[..., j]), y)
        padded = len({(x.shape[0], f.shape[0]) for x, f in zip(text_x, frames)}) > 1
        key_valid = torch.cat([text_valid, audio_valid], dim=1)  # (B, S)
        mask = key_valid[:, None, None, :] if padded else None
        n_gen = max(ar_codes[i].shape[0] for i in todo)
        gen_rows = torch.arange(n_gen, device=codes.device) < torch.tensor(
            [ar_codes[i].shape[0] for i in todo], device=codes.device
        )[:, None]  # (B, Gmax)
        at = (xs.shape[1] + tp[:, None] + torch.arange(n_gen, device=codes.device)).clamp(max=key_valid.shape[1] - 1)
        grow = (is_prompt[..., 0] | is_gen) if mode == 0 else is_gen  # frames that take each new codebook
        for i in range(q - 1):
            y_pos = self.nar_audio_position(self._prenet("nar_audio_prenet", y))
            h = self.nar_decoder(torch.cat([xs, y_pos], dim=1), cond=self.nar_stage_embeddings[i].weight, mask=mask)
            h = h.gather(1, at[..., None].expand(-1, -1, h.shape[-1]))  # (B, Gmax, D)
            ids = self.nar_predict_layers[i](h).argmax(-1)  # (B, Gmax)
            codebook = codes[..., i + 1].clone()
            codebook[is_gen] = ids[gen_rows]
            codes[..., i + 1] = codebook
            if i < q - 2:
                y = torch.where(grow[..., None], y + emb[i + 1](codes[..., i + 1]), y)
        for b, i in enumerate(todo):
            result[i] = codes[b, is_gen[b]]
        return result
