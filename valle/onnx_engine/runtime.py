"""The ONNX Runtime engine: the files of valle/onnx_engine/export.py run on the CPU, with the torch engine's decoding
loop and sampling (valle.models.decoding.decode, valle.models.valle.sample) on the logits they return."""

from __future__ import annotations

import ctypes
import functools
import importlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from valle.config import ModelConfig, Sampling
from valle.errors import UserError
from valle.models.decoding import CHECK_EVERY, decode
from valle.models.valle import frame_limits, nar_items, pad_items, sample
from valle.onnx_engine.export import AR_INPUTS, FORMAT, MANIFEST, NAR_INPUTS, kv_names

INSTALL = "pip install -e '.[onnx]' (make setup installs it)"
PROMPT_ROWS = 4  # rows per run of the AR's prompt pass (OnnxVALLE._prefill)


def require(package: str, needed_by: str = "--engine onnxruntime"):
    """The module `package` (onnxruntime, onnx), or a UserError saying how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(f"{needed_by} needs the package {package}: {INSTALL}") from None


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: --onnx takes a folder written by the ONNX export "
                        "(python -m valle export onnx --checkpoint ... --output DIR)") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable manifest ({e}); export the folder again") from None
    if manifest.get("format") != FORMAT:
        raise UserError(f"{folder} holds ONNX files of format {manifest.get('format', 1)}, this engine runs format "
                        f"{FORMAT}: export the folder again")
    return manifest


def check_digest(folder: str | Path, manifest: dict, digest: str) -> None:
    """Refuse a folder exported from another model than the one of `digest` (export.model_digest)."""
    if manifest.get("digest") != digest:
        raise UserError(f"{folder} was exported from another model (digest {manifest.get('digest', '?')[:12]}, "
                        f"this one {digest[:12]}): export it again from this checkpoint and adapters")


class OnnxVALLE:
    """A VALL-E X exported to ONNX, run by ONNX Runtime on the CPU: `generate`, `generate_ar` and `generate_nar`
    take and return what VALLE's do. `precision` is the files' (fp32 or int8), from the manifest."""

    device = torch.device("cpu")

    def __init__(self, folder: str | Path, manifest: dict, threads: int | None = None):
        ort = require("onnxruntime")
        self.folder, self.manifest = Path(folder), manifest
        self.config = ModelConfig.from_dict(manifest["config"])
        self.precision, self.int8_values = manifest["precision"], manifest["value_cache"] == "int8"
        self.past_names = kv_names(self.config.num_layers, "past", self.int8_values)  # the AR's cache inputs
        self.eos = self.config.audio_vocab_size  # as VALLE's: the AR's last code
        shared_arena()
        ar, nar = manifest["files"]
        self.ar = self._session(ort, ar, threads, ar=True)
        self.nar = self._session(ort, nar, threads)
        self.give_back_arena = ort.RunOptions()  # the NAR's: its working memory, the arena's largest, not kept
        self.give_back_arena.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def _session(self, ort, name: str, threads: int | None, ar: bool = False):
        """The session of one file, and the memory its loading freed given back to the system: ONNX Runtime reads
        the file, copies its weights out and prepacks them, and the freed copies (about 0.2 GB at full size) would
        otherwise stay in the C heap for good. The AR's session runs
        - without memory patterns: its shapes change at every step, and a pattern recorded for a prompt pass took
          a block of its own in the arena at the next prompt pass of the same shape (peak +60 MB at batch 1);
        - without MatmulTransposeFusion, which turns its product of the cached keys with the queries (a matrix
          times a vector per row and head) into one that transposes the keys at every step (16.8 against 11.3 ms
          of a batch-16 step at 300 columns)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # as torch's (OMP_NUM_THREADS)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.use_env_allocators", "1")  # shared_arena's
        options.enable_mem_pattern = not ar
        session = ort.InferenceSession(str(self.folder / name), options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=["MatmulTransposeFusion"] if ar else [])
        release_freed_memory()
        return session

    @classmethod
    def load(cls, folder: str | Path, digest: str | None = None, threads: int | None = None) -> OnnxVALLE:
        """The engine for `folder`; with `digest` (export.model_digest of the model meant), refuse a folder exported
        from another model."""
        manifest = read_manifest(folder)
        if digest is not None:
            check_digest(folder, manifest, digest)
        return cls(folder, manifest, threads)

    def eval(self) -> OnnxVALLE:
        return self

    @torch.no_grad()
    def generate(self, text: list[Tensor], langs: list[Tensor], prompts: list[Tensor], prompt_text_lens: list[int],
                 sampling: Sampling = Sampling(), use_cache: bool = True, decode_mode: str = "eager") -> list[Tensor]:
        """AR then NAR -> codes (T_i, Q) per item, as VALLE.generate (the AR always with its KV cache)."""
        if not use_cache:
            raise ValueError("the ONNX engine always decodes with the KV cache")
        c0 = self.generate_ar(text, langs, prompts, sampling, decode_mode=decode_mode)
        return self.generate_nar(text, langs, prompts, prompt_text_lens, c0)

    def generate_ar(self, text: list[Tensor], langs: list[Tensor], prompts: list[Tensor],
                    sampling: Sampling = Sampling(), use_cache: bool = True, decode_mode: str = "eager",
                    check_every: int = CHECK_EVERY) -> list[Tensor]:
        """Codebook 0 of the generated frames (T_i,) per item, as VALLE.generate_ar: the same stop rules, the same
        draws for the same logits (always with the KV cache; the graph is the engine's, not compiled)."""
        if not use_cache or decode_mode != "eager":
            raise UserError("--compile and the no-cache baseline are for the torch engine; the ONNX engine runs "
                            "its graph with the KV cache")
        logits, step = self.prefill(text, langs, prompts)
        generator = None if sampling.seed is None else torch.Generator().manual_seed(sampling.seed)
        return decode(step, logits, frame_limits(text, sampling), lambda lg: sample(lg, sampling, generator),
                      sampling.min_frames, check_every=check_every)

    def prefill(self, text: list[Tensor], langs: list[Tensor], prompts: list[Tensor]
                ) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """The AR over [text | BOS, prompt codes] of every item -> logits (B, V+1) of each item's first frame, and
        the step: ids (B,) of a frame -> logits of the next (it carries the KV cache). Items are left-padded, so
        every row's next frame is the same new column."""
        logits, cache, position = self._prefill(text, langs, prompts)
        B = len(text)
        none, one = torch.zeros(B, 0, dtype=torch.long), np.ones((B, 1), bool)

        def step(ids: Tensor) -> Tensor:
            nonlocal position
            out, new = self._ar(cache.past(slice(B)), cache.valid, none, none, none, ids[:, None], position, one)
            cache.write(new, one)
            position = position + 1
            return out

        return logits, step

    def _prefill(self, text: list[Tensor], langs: list[Tensor], prompts: list[Tensor]
                 ) -> tuple[Tensor, HostCache, Tensor]:
        """`prefill`'s prompt pass -> the first logits (B, V+1), the KV cache of the B rows (`cache.length` columns
        filled) and the audio position of each row's next frame (B, 1). The rows go through the graph PROMPT_ROWS at
        a time: its attention over all the prompt's positions is bound by memory, whose traffic a few rows keep in
        the CPU's cache (16 rows of 276 positions: 5.9 s in groups of 4 against 6.7 s at once, medians of 5)."""
        bos, B = self.config.audio_vocab_size + 1, len(text)
        text_ids, text_valid = pad_items([t.cpu() for t in text], left=True)  # (B, L)
        text_langs, _ = pad_items([lg.cpu() for lg in langs], left=True)  # (B, L)
        audio_ids, audio_valid = pad_items([F.pad(p[:, 0].cpu(), (1, 0), value=bos) for p in prompts], left=True)
        inputs = (text_ids, text_langs, positions(text_valid), audio_ids, positions(audio_valid))
        valid = torch.cat([text_valid, audio_valid], dim=1).numpy()  # (B, S0)
        cache, logits = HostCache.of(self.config, self.int8_values, rows=B), []
        for start in range(0, B, PROMPT_ROWS):
            rows = slice(start, start + PROMPT_ROWS)
            out, new = self._ar(cache.past(rows), cache.valid[rows], *(t[rows] for t in inputs), valid[rows])
            cache.fill(rows, new, valid[rows])
            logits.append(out)
        return torch.cat(logits), cache, audio_valid.sum(1, keepdim=True)

    def ar_rows(self) -> OnnxRows:
        """The AR's rows for continuous batching (valle.serve.engine), as VALLE.ar_rows."""
        return OnnxRows(self)

    def _ar(self, past: list[np.ndarray], past_valid: np.ndarray, *inputs: Tensor | np.ndarray
            ) -> tuple[Tensor, list[np.ndarray]]:
        """The AR graph on (text_ids, text_langs, text_pos, audio_ids, audio_pos (B, L or A); valid of the new
        columns (B, L+A)) after the cache `past` (HostCache.past; past_valid (B, C)) -> logits (B, V+1), and the new
        columns per layer in the cache's form (B, H, L+A, ...), for the caller to write into its cache."""
        *tensors, valid = inputs
        feeds = {name: t.numpy() for name, t in zip(AR_INPUTS, tensors)}
        feeds["valid"] = np.concatenate([past_valid, valid], axis=1)  # (B, C+L+A)
        feeds |= dict(zip(self.past_names, past))
        logits, *new = self.ar.run(None, feeds)
        return torch.from_numpy(logits), new

    @torch.no_grad()
    def generate_nar(self, text: list[Tensor], langs: list[Tensor], prompts: list[Tensor],
                     prompt_text_lens: list[int], ar_codes: list[Tensor]) -> list[Tensor]:
        """Codebooks 1..Q-1 for the AR output (T_i,) of each item -> codes (T_i, Q), greedy, as VALLE.generate_nar:
        [text | prompt frames | generated frames], right-padded; prefix mode 2 leaves the prompt's text out."""
        release_freed_memory()  # the AR's KV cache, freed in pieces too small for the NAR's working memory
        q = self.config.num_quantizers
        result = [c.new_zeros(0, q) for c in ar_codes]
        todo, skip = nar_items(ar_codes, prompt_text_lens, self.config.prefix_mode)
        if not todo:
            return result
        text_ids, text_valid = pad_items([text[i][s:].cpu() for i, s in zip(todo, skip)], left=False)  # (B, L)
        text_langs, _ = pad_items([langs[i][s:].cpu() for i, s in zip(todo, skip)], left=False)  # (B, L)
        frames = [torch.cat([prompts[i].cpu(), F.pad(ar_codes[i][:, None].cpu(), (0, q - 1))]) for i in todo]
        codes, audio_valid = pad_items(frames, left=False)  # (B, Y, Q)
        tp = torch.tensor([prompts[i].shape[0] for i in todo])  # (B,)
        is_prompt = torch.arange(codes.shape[1]) < tp[:, None]  # (B, Y)
        is_gen = audio_valid & ~is_prompt  # (B, Y)
        n_gen = torch.tensor([ar_codes[i].shape[0] for i in todo])  # (B,)
        gen_index = tp[:, None] + torch.minimum(torch.arange(int(n_gen.max())), n_gen[:, None] - 1)  # (B, G)
        inputs = (text_ids, text_langs, codes, is_prompt, is_gen, torch.cat([text_valid, audio_valid], dim=1),
                  gen_index)
        feeds = {name: t.numpy() for name, t in zip(NAR_INPUTS, inputs)}
        (out,) = self.nar.run(None, feeds, self.give_back_arena)  # (B, Y, Q); next to the next AR's cache
        out = torch.from_numpy(out)
        for b, i in enumerate(todo):
            result[i] = out[b, is_gen[b]].to(ar_codes[i].device)
        return result


@functools.cache
def shared_arena() -> None:
    """One CPU memory arena for every session of this process, registered once: the AR and the NAR run in turn, so
    the process holds the larger one's working memory, not both (45 MB less at full size)."""
    ort = require("onnxruntime")
    cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, 0, -1, -1))  # no limit, chunks grow by powers of 2


def release_freed_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim; nothing where the C library has none)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the symbols of the process: its C library's
    if trim is not None:
        trim(0)


class HostCache:
    """The AR's KV cache as the graph reads it, in place: per layer keys and values (R, H, S, Dh), float32, or with
    int8 values their scales (R, H, S) after them, and valid (R, S) marking the filled columns of each row. The
    graph is fed the first rows of every array whole (`past`: views, no copy); unfilled columns are zeros and not
    valid. Room grows GROW columns beyond what a write needs, and rows by doubling (the only copies of the cache); an
    empty cache has room for one column, so that the graph never takes a product over no columns (ONNX Runtime's
    integer product leaves its output unwritten then)."""

    GROW = 64

    def __init__(self, layers: int, heads: int, head_dim: int, int8_values: bool = False, rows: int = 0):
        kinds = [(np.float32, (head_dim,)), (np.int8, (head_dim,)), (np.float32, ())] if int8_values else \
            [(np.float32, (head_dim,))] * 2
        self.arrays = [np.zeros((rows, heads, 1, *tail), dtype) for _ in range(layers) for dtype, tail in kinds]
        self.valid = np.zeros((rows, 1), bool)  # (R, S)
        self.length = 0  # columns filled by `write` (the same in every row)

    @classmethod
    def of(cls, config: ModelConfig, int8_values: bool = False, rows: int = 0) -> HostCache:
        """An empty cache of `rows` rows for a model of `config`."""
        return cls(config.num_layers, config.nhead, config.d_model // config.nhead, int8_values, rows)

    def past(self, rows: slice) -> list[np.ndarray]:
        """The cache of `rows`, per layer, as the graph takes it (contiguous views)."""
        return [t[rows] for t in self.arrays]

    def reserve(self, rows: int, columns: int) -> None:
        """Room for at least `rows` rows of `columns` columns, keeping what is written."""
        have_rows, have_columns = self.valid.shape
        more_rows = max(rows - have_rows, have_rows) if rows > have_rows else 0
        more_columns = columns - have_columns + self.GROW if columns > have_columns else 0
        if not (more_rows or more_columns):
            return
        for i, t in enumerate(self.arrays):  # one array at a time: the cache is never held twice
            self.arrays[i] = np.pad(t, [(0, more_rows), (0, 0), (0, more_columns)] + [(0, 0)] * (t.ndim - 3))
        self.valid = np.pad(self.valid, [(0, more_rows), (0, more_columns)])

    def write(self, new: list[np.ndarray], valid: np.ndarray) -> None:
        """Every row's next T columns. new: per layer (B, H, T, ...) as the graph returns them; valid (B, T)."""
        start, end = self.length, self.length + valid.shape[1]
        self.reserve(valid.shape[0], end)
        for t, n in zip(self.arrays, new):
            t[: len(n), :, start:end] = n
        self.valid[: len(valid), start:end] = valid
        self.length = end

    def fill(self, rows: slice, new: list[np.ndarray], valid: np.ndarray) -> None:
        """The prompt pass of `rows` (a part of a batch): their first T columns, as `write` writes a whole batch's;
        every part of the batch fills the same columns. new: per layer (n, H, T, ...); valid (n, T)."""
        self.reserve(len(self.valid), valid.shape[1])  # the rows are there: the batch's cache is made for it
        for t, n in zip(self.arrays, new):
            t[rows, :, : valid.shape[1]] = n
        self.valid[rows, : valid.shape[1]] = valid
        self.length = valid.shape[1]

    def write_row(self, row: int, alone: HostCache) -> None:
        """Row `row` anew: the filled columns of `alone`, a one-row cache (one item's prefill); every other column
        not valid."""
        columns = alone.length
        self.reserve(row + 1, columns)
        for t, one in zip(self.arrays, alone.arrays):
            t[row, :, :columns] = one[0, :, :columns]
        self.valid[row] = False
        self.valid[row, :columns] = alone.valid[0, :columns]

    def write_columns(self, new: list[np.ndarray], columns: np.ndarray) -> None:
        """One new column per row, row r's at columns[r] (n,). new: per layer (n, H, 1, ...) as the graph returns
        them."""
        rows = np.arange(len(columns))
        self.reserve(len(columns), int(columns.max()) + 1)
        for t, n in zip(self.arrays, new):
            t[rows, :, columns] = n[:, :, 0]  # (n, H, ...)
        self.valid[rows, columns] = True

    def move_row(self, source: int, target: int) -> None:
        """Row `target` becomes a copy of row `source`."""
        for t in self.arrays:
            t[target] = t[source]
        self.valid[target] = self.valid[source]


class OnnxRows:
    """valle.models.continuous.ARRows for the ONNX engine: `join` (prefill one item), `step` (one frame for every
    row), `leave`. Rows keep their own lengths in one HostCache: a step writes each row's new keys and values at
    that row's next column, and the graph attends to the columns each row has filled."""

    def __init__(self, model: OnnxVALLE):
        self.model = model
        self.cache = HostCache.of(model.config, model.int8_values)
        self.columns: list[int] = []  # per row: the column its next frame is written to
        self.positions: list[int] = []  # per row: the audio position of its next frame

    def __len__(self) -> int:
        return len(self.columns)

    def join(self, text: Tensor, langs: Tensor, prompt: Tensor, frames: int) -> Tensor:
        """Prefill one item (text (L,), langs (L,), prompt codes (Tp, Q)); it becomes the last row -> logits (1, V+1)
        of its first frame. The cache grows as frames come (`frames` is not reserved ahead)."""
        logits, alone, position = self.model._prefill([text], [langs], [prompt])  # as when generated alone
        self.cache.write_row(len(self), alone)
        self.columns.append(alone.length)
        self.positions.append(int(position))
        return logits

    def step(self, ids: Tensor) -> Tensor:
        """ids (n,): each row's newest frame -> logits (n, V+1) of each row's next frame."""
        n = len(self)
        none = torch.zeros(n, 0, dtype=torch.long)
        logits, new = self.model._ar(self.cache.past(slice(n)), self.cache.valid[:n], none, none, none,
                                     ids.cpu()[:, None], torch.tensor(self.positions)[:, None], np.ones((n, 1), bool))
        self.cache.write_columns(new, np.array(self.columns))
        self.columns = [c + 1 for c in self.columns]
        self.positions = [p + 1 for p in self.positions]
        return logits

    def leave(self, row: int) -> None:
        """Drop `row`; the last row takes its place."""
        last = len(self) - 1
        if row != last:
            self.cache.move_row(last, row)
            self.columns[row], self.positions[row] = self.columns[last], self.positions[last]
        self.columns.pop()
        self.positions.pop()
        if not self.columns:  # the cache goes with the last row: later rows do not read the columns of long ones
            self.cache = HostCache.of(self.model.config, self.model.int8_values)


def positions(valid: Tensor) -> Tensor:
    """valid (B, N) of left-padded rows -> (B, N): 0, 1, ... along each row's valid part (0 on the padding)."""
    return (valid.long().cumsum(1) - 1).clamp(min=0)
