"""Attach audio codes (Encodec, HDF5) and text tokens to normalized cuts; split into train/dev/test.

Files (DATA = the recipe's data dir):
  DATA/manifests/cuts_<part>.jsonl.gz          normalized cuts (from valle.data.corpus)
  DATA/tokenized/codes_<part>.h5               int16 codes (T, 8) per cut id (NumpyHdf5Writer)
  DATA/tokenized/cuts_<part>_codes.jsonl.gz    + cut.codes
  DATA/tokenized/cuts_<part>_text.jsonl.gz     + supervision.custom phonemes / text_ids / text_langs
  DATA/tokenized/cuts_{train,dev,test}.jsonl.gz and text_tokenizer.json
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from lhotse import CutSet
from lhotse.array import Array, TemporalArray
from lhotse.features.io import NumpyHdf5Writer, close_cached_file_handles
from tqdm import tqdm

from valle.audio import FRAME_RATE, SAMPLE_RATE, Codec, code_frames, length_batches
from valle.errors import UserError
from valle.storage import check_free_space
from valle.config import LANGUAGE_IDS, NUM_QUANTIZERS
from valle.data.corpus import (TMP_PREFIX, Rejection, format_summary, load_cuts, read_rejections, require_some, save_cuts,
                               update_summary, write_rejections, write_whole)

SPLITS = ("train", "dev", "test")
# LibriTTS parts -> our splits; every other part (train-*) is training data.
PART_SPLITS = {"dev-clean": "dev", "dev-other": "dev", "test-clean": "test", "test-other": "test"}
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- codes


def _fingerprint(cut) -> str:
    """The audio file a cut's codes were made from, as it was (path, size, modification time)."""
    source = Path(cut.recording.sources[0].source)
    stat = source.stat()
    return f"{source}:{stat.st_size}:{stat.st_mtime_ns}"


# Codes are stored so that no file is ever half-written (a full disk, a kill): DATA/tokenized/codes_<part>.h5 is
# only ever replaced whole (written to a temporary file, synced, renamed). New codes go to pieces, codes_<part>.h5.pieces/N.h5
# (each also written whole), at least every PIECE_SECONDS of audio and on Ctrl-C; the end of the stage merges the
# store and the pieces into a new store. A rerun after any interruption finds the store and the pieces intact.
PIECE_SECONDS = 600.0  # audio between two pieces: what a SIGKILL or a power cut can cost
H5_BYTES_PER_CUT = 1024  # HDF5 header, name and attributes of one stored array (measured: about 520)


def _pieces_dir(h5_path: Path) -> Path:
    return h5_path.with_name(h5_path.name + ".pieces")


def _read_index(path: Path, weights: str) -> dict[str, tuple] | None:
    """{key: (shape, fingerprint)} of a codes file made with `weights`; None when made with other weights."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("codec_weights") != weights:
            return None
        return {key: (f[key].shape, f[key].attrs.get("source")) for key in f.keys()}


def _damage(path: Path) -> str:
    """Why `path` is not a readable HDF5 file ("" when it is), found by a separate process: HDF5 can crash the
    process that opens a damaged file (one an older version left on a full disk), and this one must go on."""
    script = "import sys, h5py\nwith h5py.File(sys.argv[1], 'r') as f:\n    [f[k].shape for k in f]"
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    if proc.returncode == 0:
        return ""
    if proc.returncode < 0:
        return f"damaged (reading it crashed with signal {-proc.returncode})"
    return f"unreadable ({(proc.stderr.strip().splitlines() or ['?'])[-1][:200]})"


def _stored_codes(h5_path: Path, weights: str) -> dict[str, tuple]:
    """key -> (file, shape, fingerprint) of the codes already stored, in the store and its pieces (resume).
    A store that is unreadable or holds codes of other codec weights is moved aside (codes_<part>.old.h5);
    such a piece is removed, and so are the temporary files a killed run left."""
    for tmp in [*h5_path.parent.glob(f"{TMP_PREFIX}*.h5"), *_pieces_dir(h5_path).glob(f"{TMP_PREFIX}*")]:
        tmp.unlink()
    found = {}
    if h5_path.is_file():
        reason = _damage(h5_path)
        index = None if reason else _read_index(h5_path, weights)
        if index is None:
            aside = h5_path.with_suffix(".old.h5")
            log.warning("%s is %s: moved to %s, computing its codes again", h5_path,
                        reason or "made with other --codec-weights", aside)
            shutil.move(h5_path, aside)
        else:
            found.update({key: (h5_path, *value) for key, value in index.items()})
    for piece in sorted(_pieces_dir(h5_path).glob("*.h5"), key=lambda p: int(p.stem)):
        try:
            index = _read_index(piece, weights)
        except OSError:
            index = None
        if index is None:
            log.warning("%s is unreadable or made with other --codec-weights: removed", piece)
            piece.unlink()
            continue
        found.update({key: (piece, *value) for key, value in index.items()})  # a later piece wins
    return found


def _write_whole(path: Path, items, weights: str) -> None:
    """An HDF5 codes file at `path` from (key, codes (frames, 8) int16, fingerprint) items, written whole and
    synced (`write_whole`): `path` is either absent, its old self, or complete. The file is built in memory and
    written with plain writes, because HDF5 crashes the process (segfault) when the disk fills under it."""
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        f.attrs["codec_weights"] = weights
        for key, codes, source in items:
            f.create_dataset(key, data=codes)
            f[key].attrs["source"] = source

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(image.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())

    write_whole(path, write, f"codes ({path.name})")


def _merge(h5_path: Path, cuts: list, stored: dict[str, tuple], weights: str) -> None:
    """Write the store anew from the stored codes of `cuts` (old store and pieces), then drop the pieces."""
    with contextlib.ExitStack() as stack:
        files = {path: stack.enter_context(h5py.File(path, "r")) for path in {stored[c.id][0] for c in cuts}}
        _write_whole(h5_path, ((c.id, files[stored[c.id][0]][c.id][()], stored[c.id][2]) for c in cuts), weights)
    shutil.rmtree(_pieces_dir(h5_path), ignore_errors=True)
    close_cached_file_handles()  # lhotse keeps HDF5 files open by path: the next read must see the new store


def _check_space(h5_path: Path, todo: list, cuts: list, expected: dict) -> None:
    """Before encoding: room for the new pieces and for the merged store (both exist for a moment)."""
    def size(cut_list) -> int:
        return sum(expected[c.id][0] * NUM_QUANTIZERS * 2 + H5_BYTES_PER_CUT for c in cut_list)  # int16 (frames, 8)

    check_free_space(h5_path.parent, size(todo) + size(cuts), f"the codes of {len(todo)} cut(s)",
                     "free space or use a --data-dir on a larger disk, then run the codes stage again")


def _codes_array(h5_path: Path, key: str, shape) -> TemporalArray:
    """The manifest NumpyHdf5Writer.store_array returns, for codes that are already stored."""
    array = Array(storage_type=NumpyHdf5Writer.name, storage_path=str(h5_path), storage_key=key, shape=list(shape))
    return TemporalArray(array=array, temporal_dim=0, frame_shift=1 / FRAME_RATE, start=0)


def compute_codes(cuts: CutSet, h5_path: Path, codec: Codec) -> CutSet:
    """Encode every cut's audio and store int16 codes (frames, 8) under the cut id in h5_path.

    Resumable: codes already stored for the same audio file (path, size, mtime) with the right number of
    frames (`code_frames(cut.duration)`) are kept; only the rest is computed. Free space is checked first.
    Returns the cuts with `cut.codes` attached.
    """
    h5_path = h5_path.resolve()
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    cuts = list(cuts)
    stored = _stored_codes(h5_path, codec.weights)
    expected = {c.id: (code_frames(c.duration), NUM_QUANTIZERS) for c in cuts}
    todo = [c for c in cuts if stored.get(c.id, (None,))[1:] != (expected[c.id], _fingerprint(c))]
    log.info("codes: %d cuts, %d already in %s, %d to encode", len(cuts), len(cuts) - len(todo), h5_path, len(todo))
    if todo:
        _check_space(h5_path, todo, cuts, expected)
        _encode_to_pieces(todo, h5_path, codec, expected, stored)
    if todo or _pieces_dir(h5_path).is_dir():
        _merge(h5_path, cuts, stored, codec.weights)
    return CutSet.from_cuts(_with_codes(c, h5_path, expected[c.id]) for c in cuts)


def _encode_to_pieces(todo: list, h5_path: Path, codec: Codec, expected: dict, stored: dict) -> None:
    """Encode `todo` group by group; write a piece every PIECE_SECONDS of audio, at the end and on Ctrl-C.
    Adds what it wrote to `stored`."""
    pieces = _pieces_dir(h5_path)
    pieces.mkdir(exist_ok=True)
    pending: list[tuple] = []  # (cut id, codes (frames, 8) int16, fingerprint)

    def flush() -> None:
        if pending:
            piece = pieces / f"{1 + max((int(p.stem) for p in pieces.glob('*.h5')), default=0)}.h5"
            _write_whole(piece, pending, codec.weights)
            stored.update({key: (piece, codes.shape, source) for key, codes, source in pending})
            pending.clear()

    with tqdm(total=round(sum(c.duration for c in todo)), desc="encodec", unit="s audio") as bar:
        try:
            # One codec batch at a time, grouped by the codec's own rule (encode() then sees one batch): lhotse's
            # samplers bound the sum of durations, not count x longest, the padded audio the encoder runs on.
            batches = length_batches([c.num_samples for c in todo], int(codec.max_batch_seconds * SAMPLE_RATE))
            for group in ([todo[i] for i in batch] for batch in batches):
                waves = [torch.from_numpy(c.load_audio()[0]) for c in group]  # (T,) each, mono 24 kHz
                for cut, codes in zip(group, codec.encode(waves)):  # (frames, 8) each
                    codes = codes[: expected[cut.id][0]].numpy().astype(np.int16)  # (frames, 8)
                    pending.append((cut.id, codes, _fingerprint(cut)))
                bar.update(round(sum(c.duration for c in group)))
                if sum(len(codes) for _, codes, _ in pending) >= PIECE_SECONDS * FRAME_RATE:
                    flush()
        except KeyboardInterrupt:
            flush()  # what was encoded is kept for the rerun
            raise
        flush()


def _with_codes(cut, h5_path: Path, shape):
    cut.codes = _codes_array(h5_path, cut.id, shape)
    return cut


# -------------------------------------------------------------------------------------------- text


def attach_text_tokens(cuts: CutSet, tokenizer, language: str):
    """Tokenize each supervision's text; store phonemes, ids and per-token language ids on the supervision.

    Returns (kept cuts, rejections for text the g2p cannot handle, Counter of unknown symbols).
    """
    from valle.text import TextError  # the text package loads g2p models: only when this stage runs

    kept, rejections, unknown = [], [], collections.Counter()
    for cut in tqdm(cuts, desc=f"text tokens ({tokenizer.name})"):
        sup = cut.supervisions[0]
        try:
            tokenized = tokenizer.encode(sup.text, language)
        except TextError as e:
            source = (sup.custom or {}).get("source", cut.id)
            rejections.append(Rejection(source, "g2p failed", str(e)))
            continue
        unknown.update(tokenized.unknown)
        sup.language = language
        sup.custom = {**(sup.custom or {}), "phonemes": tokenized.phonemes, "text_ids": list(tokenized.ids),
                      "text_langs": [LANGUAGE_IDS[lang] for lang in tokenized.languages]}
        kept.append(cut)
    return CutSet.from_cuts(kept), rejections, unknown


# ------------------------------------------------------------------------------------------- split


def _split_sizes(n: int, dev_ratio: float, test_ratio: float) -> tuple[int, int]:
    """Rounded ratios, but at least one dev (and test) cut whenever its ratio > 0 and a train cut remains."""
    n_dev = max(1, round(n * dev_ratio)) if dev_ratio > 0 and n >= 2 else 0
    n_test = max(1, round(n * test_ratio)) if test_ratio > 0 and n - n_dev >= 2 else 0
    return n_dev, n_test


def random_split(cuts: CutSet, dev_ratio: float, test_ratio: float, seed: int,
                 heldout_speakers: list[str] = ()) -> dict[str, CutSet]:
    """Deterministic: cuts of `heldout_speakers` go to test (unseen voices); the rest is shuffled with `seed`
    (cut ids sorted first, so input order does not matter) and cut into dev / test / train by ratio."""
    if dev_ratio < 0 or test_ratio < 0 or dev_ratio + test_ratio >= 1:
        raise UserError(f"--dev-ratio {dev_ratio} and --test-ratio {test_ratio} must be >= 0 and sum to below 1")
    heldout = set(heldout_speakers)
    known = {c.supervisions[0].speaker for c in cuts}
    if heldout - known:
        raise UserError(f"--heldout-speakers: {sorted(heldout - known)} not in the corpus; speakers: {sorted(known)[:20]}")
    rest = sorted((c for c in cuts if c.supervisions[0].speaker not in heldout), key=lambda c: c.id)
    if not rest:
        raise UserError("--heldout-speakers holds out every speaker: nothing is left for training")
    random.Random(seed).shuffle(rest)
    n_dev, n_test = _split_sizes(len(rest), dev_ratio, test_ratio)
    return {"dev": CutSet.from_cuts(rest[:n_dev]),
            "test": CutSet.from_cuts(rest[n_dev:n_dev + n_test] + [c for c in cuts if c.supervisions[0].speaker in heldout]),
            "train": CutSet.from_cuts(rest[n_dev + n_test:])}


def split_by_parts(parts: dict[str, CutSet], dev_ratio: float, test_ratio: float, seed: int,
                   heldout_speakers: list[str] = ()) -> dict[str, CutSet]:
    """LibriTTS parts dev-* -> dev, test-* -> test; every other part (train-*, or "all" for a custom corpus)
    -> train. A split with no part of its own is carved out of train by ratio; held-out speakers -> test."""
    grouped: dict[str, list] = {s: [] for s in SPLITS}
    for part, cuts in sorted(parts.items()):
        grouped[PART_SPLITS.get(part, "train")].extend(cuts)
    carved = random_split(CutSet.from_cuts(grouped["train"]), 0 if grouped["dev"] else dev_ratio,
                          0 if grouped["test"] else test_ratio, seed, heldout_speakers)
    splits = {"train": carved["train"]}
    for name in ("dev", "test"):
        splits[name] = CutSet.from_cuts(list(carved[name]) + grouped[name])
    if len(splits["dev"]) == 0:
        raise UserError(f"the dev set is empty ({len(splits['train'])} usable cuts, --dev-ratio {dev_ratio}): "
                        "training validates on it; add recordings or raise --dev-ratio")
    return splits


def split_stats(splits: dict[str, CutSet]) -> dict:
    return {s: {"cuts": len(c), "hours": round(sum(x.duration for x in c) / 3600, 4),
                "speakers": len({x.supervisions[0].speaker for x in c})} for s, c in splits.items()}


# ------------------------------------------------------------------------------------------ stages


def _parts(folder: Path, prefix: str, suffix: str) -> list[str]:
    parts = sorted(p.name[len(prefix):-len(suffix)] for p in folder.glob(f"{prefix}*{suffix}"))
    if not parts:
        raise UserError(f"no {folder}/{prefix}*{suffix}: run the earlier stages of prepare.sh first")
    return parts


def _remove_stale(folder: Path, suffix: str, parts: list[str]) -> None:
    """Outputs of parts that an earlier run had and this one has not."""
    for path in folder.glob(f"cuts_*{suffix}"):
        if path.name[len("cuts_"):-len(suffix)] not in parts:
            path.unlink()


def stage_codes(data_dir: Path, codec: Codec) -> None:
    """manifests/cuts_<part> -> tokenized/codes_<part>.h5 + tokenized/cuts_<part>_codes.jsonl.gz (resumable)."""
    out = data_dir / "tokenized"
    parts = _parts(data_dir / "manifests", "cuts_", ".jsonl.gz")
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out, "_codes.jsonl.gz", parts)
    for part in parts:
        cuts = compute_codes(load_cuts(data_dir / "manifests" / f"cuts_{part}.jsonl.gz"), out / f"codes_{part}.h5", codec)
        save_cuts(cuts, out / f"cuts_{part}_codes.jsonl.gz")


def stage_text(data_dir: Path, tokenizer, language: str) -> dict:
    """tokenized/cuts_<part>_codes -> cuts_<part>_text (+ text_tokenizer.json, g2p rejections, unknown symbols).
    An `espeak` tokenizer without a symbol table gets one built from this corpus (unique_text_tokens.k2symbols)."""
    from valle.text import save_tokenizer_info  # loads g2p models: only when this stage runs

    out = data_dir / "tokenized"
    rejections, unknown, kept, total = [], collections.Counter(), 0, 0
    parts = _parts(out, "cuts_", "_codes.jsonl.gz")
    _remove_stale(out, "_text.jsonl.gz", parts)
    if tokenizer.name == "espeak" and not tokenizer.phones:  # training from scratch: the corpus makes the table
        _build_espeak_table(tokenizer, [load_cuts(out / f"cuts_{p}_codes.jsonl.gz") for p in parts], language)
    for part in parts:
        cuts = load_cuts(out / f"cuts_{part}_codes.jsonl.gz")
        part_kept, part_rejected, part_unknown = attach_text_tokens(cuts, tokenizer, language)
        save_cuts(part_kept, out / f"cuts_{part}_text.jsonl.gz")
        rejections += part_rejected
        unknown += part_unknown
        kept, total = kept + len(part_kept), total + len(cuts)
    save_tokenizer_info(tokenizer, out)
    if tokenizer.name == "espeak":
        tokenizer.save_k2symbols(out / "unique_text_tokens.k2symbols")
    write_rejections(data_dir, "text", rejections)
    summary = update_summary(data_dir, "text", {"tokenizer": tokenizer.name, "language": language, "kept": kept,
                                                "rejected": len(rejections), "unknown_symbols": dict(unknown.most_common())})
    log.info("text tokens: %d kept, %d rejected, %d unknown symbol occurrence(s) %s",
             kept, len(rejections), sum(unknown.values()), dict(unknown.most_common(20)))
    require_some(kept, total, rejections, f"{out} (text stage)")
    return summary


def _build_espeak_table(tokenizer, cutsets: list[CutSet], language: str) -> None:
    from valle.text.espeak import phonemize

    texts = [c.supervisions[0].text for cuts in cutsets for c in cuts]
    tokenizer.build_vocab(phonemize(t, language)[0] for t in tqdm(texts, desc="espeak symbol table"))
    log.info("espeak symbol table: %d phones from %d transcripts", len(tokenizer.phones), len(texts))


def stage_split(data_dir: Path, dev_ratio: float, test_ratio: float, seed: int, heldout_speakers: list[str] = ()) -> dict:
    """tokenized/cuts_<part>_text -> tokenized/cuts_{train,dev,test}.jsonl.gz; prints the final summary."""

    out = data_dir / "tokenized"
    parts = {p: load_cuts(out / f"cuts_{p}_text.jsonl.gz") for p in _parts(out, "cuts_", "_text.jsonl.gz")}
    splits = split_by_parts(parts, dev_ratio, test_ratio, seed, heldout_speakers)
    for name, cuts in splits.items():
        save_cuts(cuts, out / f"cuts_{name}.jsonl.gz")
    summary = update_summary(data_dir, "split", split_stats(splits))
    print(format_summary(summary, read_rejections(data_dir), data_dir))
    return summary
