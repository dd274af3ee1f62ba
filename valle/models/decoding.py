"""Static-shape AR decoding: one frame per step with the same tensor shapes at every step.

After the prompt pass (prefill), every step reads the previous frame's codes from a fixed buffer, writes its keys
and values into the preallocated KV cache at a column held on the device, attends over all columns of the cache
(the unfilled ones masked) and writes the logits to a fixed buffer. Nothing in a step depends on a host value,
so the step can be compiled (`torch.compile`) and captured once as a CUDA graph and replayed. Finished items stay in
the batch (their frames are ignored); the host reads the device only every `check_every` steps, to see whether every
item has stopped. The result is the same for any `check_every` (tested).

Modes: "eager" runs the step as plain PyTorch; "cudagraph" (CUDA only) captures that same step once and replays it;
"inductor" runs it through `torch.compile` (a C++ compiler on CPU, Triton on GPUs), on CUDA then captured as a graph.
An eager step needs no fixed shapes: it attends over the filled columns only (the host knows how many), which
spares reading the unfilled part of the cache (a batch-16 step reads more cache than weights).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from valle.errors import UserError

DECODE_MODES = ("eager", "cudagraph", "inductor")
CHECK_EVERY = 8  # steps between the host's looks at "has every item stopped?" (the only device sync)


class ColumnCache:
    """The KV cache as the static step sees it: keys/values go to one device-side column; attention sees every column.

    k, v: (layers, B, H, S, Dh), the prefill's preallocated cache; column: (1,) long on the device.
    """

    def __init__(self, k: Tensor, v: Tensor, column: Tensor, width: int | None = None):
        self.k, self.v, self.column, self.width = k, v, column, width
        self.length = 0  # advanced by TransformerStack; unused here (the column is on the device)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """k, v (B, H, 1, Dh) -> the keys and values of this layer's first `width` columns (all by default),
        (B, H, width, Dh)."""
        self.k[layer].index_copy_(2, self.column, k)
        self.v[layer].index_copy_(2, self.column, v)
        return self.k[layer, :, :, : self.width], self.v[layer, :, :, : self.width]


class ARState:
    """The fixed buffers one decoding run's steps read and write (a captured step keeps their addresses).

    ids (B,) codes of the previous frame; positions (B,) their audio positions; column (1,) their cache column;
    key_valid (B, S) which cache columns may be attended to; k, v (layers, B, H, S, Dh) the cache.
    """

    def __init__(self, k: Tensor, v: Tensor, key_valid: Tensor, positions: Tensor, column: int, num_positions: int):
        self.k, self.v = k, v
        self.filled = column  # host copy of the column count written so far (the eager step's attention width)
        self.key_valid = pad_columns(key_valid, k.shape[3])  # (B, S)
        self.positions = positions.clone()  # (B,)
        self.column = torch.tensor([column], device=k.device)  # (1,)
        self.ids = torch.zeros_like(self.positions)  # (B,)
        self.num_positions = num_positions  # an upper bound of every position (host side, fixed)


def pad_columns(valid: Tensor, width: int) -> Tensor:
    """valid (B, S0) bool -> (B, width): False appended."""
    return torch.cat([valid, valid.new_zeros(valid.shape[0], width - valid.shape[1])], dim=1)


def ar_step(model, s: ARState, width: int | None = None) -> Tensor:
    """One frame for every row: embed `s.ids` at `s.positions`, run the decoder over the cache -> logits (B, V+1).

    Writes column `s.column` of the cache and marks it valid; advances nothing (the caller moves positions/column).
    width: attend over the first `width` columns only (eager steps: the filled ones); None: all (static shapes).
    """
    s.key_valid.index_fill_(1, s.column, True)
    x = model.embed_ar_audio(s.ids[:, None], s.positions[:, None], s.num_positions)  # (B, 1, D)
    mask = s.key_valid[:, None, None, :width]  # (B, 1, 1, width)
    h = model.ar_decoder(x, mask=mask, cache=ColumnCache(s.k, s.v, s.column, width))  # (B, 1, D)
    return model.ar_predict_layer(h[:, 0]).float()


def check_mode(mode: str, device: torch.device) -> None:
    if mode not in DECODE_MODES:
        raise UserError(f"decode mode {mode!r}: use one of {', '.join(DECODE_MODES)}")
    if mode == "cudagraph" and device.type != "cuda":
        raise UserError(f"--compile cudagraph needs a CUDA device (the model is on {device}); "
                        "use --compile none or inductor")


def step_runner(model, s: ARState, mode: str) -> Callable[[], Tensor]:
    """A function that runs one step on the state's buffers and returns the logits (B, V+1), in `mode`."""
    cuda = s.k.device.type == "cuda"
    if mode == "eager":
        return lambda: ar_step(model, s, width=s.filled + 1)
    fn = ar_step
    if mode == "inductor":
        fn = torch.compile(ar_step, fullgraph=True)  # a second shape recompiles once, with dynamic sizes
    if not cuda:
        return lambda: fn(model, s)
    return _captured(lambda: fn(model, s))


def _captured(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """Capture `fn` (which only touches fixed buffers) as a CUDA graph; the returned function replays it.

    The warm-up runs (required before a capture; they also compile) repeat the first step exactly, so they
    leave the buffers as that step will.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()  # (B, V+1), a buffer of the graph's pool

    def replay() -> Tensor:
        graph.replay()
        return out

    return replay


def static_step(model, state: ARState, mode: str) -> Callable[[Tensor], Tensor]:
    """ids (B,) of the newest frame -> logits (B, V+1) of the next one, by the static step in `mode` on `state`'s
    buffers (built at the first call: a run that stops after one frame compiles nothing)."""
    check_mode(mode, state.k.device)
    run = None

    def step(ids: Tensor) -> Tensor:
        nonlocal run
        state.ids.copy_(ids)
        if run is None:
            run = step_runner(model, state, mode)
        logits = run()
        state.positions.add_(1)
        state.column.add_(1)
        state.filled += 1
        return logits

    return step


def decode(step: Callable[[Tensor], Tensor], first_logits: Tensor, limits: list[int],
           sample: Callable[[Tensor], Tensor], min_frames: int, check_every: int = CHECK_EVERY) -> list[Tensor]:
    """Generate frames until every row has emitted EOS or reached its limit -> codes (T_i,) per row.

    step: ids (B,) of a frame -> logits (B, V+1) of the next (the torch static step, or another engine's).
    first_logits (B, V+1): the prefill's prediction of frame 0. sample: logits (B, V+1) -> ids (B,).
    Row i stops at EOS (not kept) or after limits[i] frames; EOS is not allowed before `min_frames`.
    """
    device, eos = first_logits.device, first_logits.shape[1] - 1
    steps = max(limits)
    codes = torch.empty(len(limits), steps, dtype=torch.long, device=device)  # (B, steps)
    length = torch.tensor(limits, device=device)  # (B,): frames kept per row (lowered at its EOS)
    logits = first_logits
    for t in range(steps):
        if t < min_frames:
            logits[:, eos] = float("-inf")
        ids = sample(logits)  # (B,)
        codes[:, t] = ids
        length = torch.where((ids == eos) & (length > t), t, length)
        if t + 1 == steps or ((t + 1) % check_every == 0 and not bool((length > t + 1).any())):
            break
        logits = step(ids)
    return [codes[i, :n] for i, n in enumerate(length.tolist())]
