"""Continuous batching of the AR: items join a running batch and leave it at step boundaries.

An item joins after a prefill of its own (`VALLE.ar_inputs` + `ar_prefill`, as when it is generated alone) and
becomes one row of a shared KV cache. Every row keeps its own length: a step writes each row's new keys and values
at that row's next column and attends over the columns that row has filled, so rows of any length share one step
and an item's frames do not depend on the other rows (exactly equal to generating it alone, up to float rounding
of the attention sums). A row that leaves is replaced by the last row (one copy), so the running rows are 0..n-1.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RowCache:
    """The KV cache one step sees: row i writes its new keys and values at column `columns[i]`.

    k, v: (layers, n, H, W, Dh) views of the shared cache; columns: (n,) long.
    """

    def __init__(self, k: Tensor, v: Tensor, columns: Tensor):
        self.k, self.v, self.columns = k, v, columns
        self.rows = torch.arange(columns.shape[0], device=columns.device)  # (n,)
        self.length = 0  # advanced by TransformerStack; the columns are per row here

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """k, v (n, H, 1, Dh) -> every key and value of this layer (n, H, W, Dh)."""
        self.k[layer][self.rows, :, self.columns] = k[:, :, 0]
        self.v[layer][self.rows, :, self.columns] = v[:, :, 0]
        return self.k[layer], self.v[layer]


class ARRows:
    """The running rows of one model's AR: `join` (prefill one item), `step` (one frame for every row), `leave`.

    The cache (layers, R, H, S, Dh) grows when a joining row needs more rows or columns and is freed when the last
    row leaves; `valid` (R, S) marks the columns each row may attend to.
    """

    def __init__(self, model):
        self.model = model
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.valid: Tensor | None = None
        self.columns: list[int] = []  # per row: the column its next frame is written to
        self.positions: list[int] = []  # per row: the audio position of its next frame

    def __len__(self) -> int:
        return len(self.columns)

    @torch.no_grad()
    def join(self, text: Tensor, langs: Tensor, prompt: Tensor, frames: int) -> Tensor:
        """Prefill one item (text (L,), langs (L,), prompt codes (Tp, Q)) with room for `frames` frames; it becomes
        the last row -> logits (1, V+1) of its first frame."""
        m = self.model
        seq, valid, text_len, next_pos = m.ar_inputs([text], [langs], [prompt])
        logits, state = m.ar_prefill(seq, valid, text_len, next_pos, steps=0)
        s0 = seq.shape[1]
        row = len(self)
        self._reserve(row + 1, s0 + frames, like=state.k)
        self.k[:, row, :, :s0] = state.k[:, 0]
        self.v[:, row, :, :s0] = state.v[:, 0]
        self.valid[row] = False
        self.valid[row, :s0] = True
        self.columns.append(s0)
        self.positions.append(int(next_pos[0]))
        return logits

    @torch.no_grad()
    def step(self, ids: Tensor) -> Tensor:
        """ids (n,): each row's newest frame -> logits (n, V+1) of each row's next frame."""
        m, n = self.model, len(self)
        width = max(self.columns) + 1
        device = ids.device
        columns = torch.tensor(self.columns, device=device)  # (n,)
        positions = torch.tensor(self.positions, device=device)  # (n,)
        valid = self.valid[:n, :width]  # (n, W), a view: marks stay
        valid[torch.arange(n, device=device), columns] = True
        x = m.embed_ar_audio(ids[:, None], positions[:, None], max(self.positions) + 1)  # (n, 1, D)
        cache = RowCache(self.k[:, :n, :, :width], self.v[:, :n, :, :width], columns)
        h = m.ar_decoder(x, mask=valid[:, None, None, :], cache=cache)  # (n, 1, D)
        self.columns = [c + 1 for c in self.columns]
        self.positions = [p + 1 for p in self.positions]
        return m.ar_predict_layer(h[:, 0]).float()

    def leave(self, row: int) -> None:
        """Drop `row`; the last row takes its place."""
        last = len(self) - 1
        if row != last:
            width = self.columns[last]
            self.k[:, row, :, :width] = self.k[:, last, :, :width]
            self.v[:, row, :, :width] = self.v[:, last, :, :width]
            self.valid[row] = self.valid[last]
            self.columns[row], self.positions[row] = self.columns[last], self.positions[last]
        self.columns.pop()
        self.positions.pop()
        if not self.columns:
            self.k = self.v = self.valid = None

    def _reserve(self, rows: int, width: int, like: Tensor) -> None:
        """Make the cache at least `rows` x `width`, keeping what the running rows hold."""
        if self.k is not None and self.k.shape[1] >= rows and self.k.shape[3] >= width:
            return
        layers, _, heads, _, head_dim = like.shape
        old = self.k.shape if self.k is not None else (0, 0, 0, 0, 0)
        shape = (layers, max(rows, 2 * old[1]), heads, max(width, old[3]), head_dim)
        k, v = like.new_zeros(shape), like.new_zeros(shape)  # (layers, R, H, S, Dh)
        valid = torch.zeros(shape[1], shape[3], dtype=torch.bool, device=like.device)  # (R, S)
        if self.k is not None:
            n, s = len(self), old[3]
            k[:, :n, :, :s], v[:, :n, :, :s], valid[:n, :s] = self.k[:, :n], self.v[:, :n], self.valid[:n]
        self.k, self.v, self.valid = k, v, valid
