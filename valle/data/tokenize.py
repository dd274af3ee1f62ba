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
import logging
import random
import shutil
from pathlib import Path

import h5py
import numpy as np
import torch
from lhotse import CutSet
from lhotse.array import Array, TemporalArray, seconds_to_frames
from lhotse.features.io import NumpyHdf5Writer
from tqdm import tqdm

from valle.audio import FRAME_RATE, SAMPLE_RATE, Codec, length_batches
from valle.errors import UserError
from valle.config import LANGUAGE_IDS, NUM_QUANTIZERS
from valle.data.corpus import (Rejection, format_summary, load_cuts, read_rejections, require_some, update_summary,
                               write_rejections)

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


def _stored_codes(h5_path: Path, weights: str) -> dict[str, tuple]:
    """(shape, fingerprint) of the codes already in h5_path (resume). A file that is unreadable (killed
    mid-write) or holds codes of other codec weights is moved aside."""
    if not h5_path.is_file():
        return {}
    try:
        with h5py.File(h5_path, "r") as f:
            if f.attrs.get("codec_weights") == weights:
                return {key: (f[key].shape, f[key].attrs.get("source")) for key in f.keys()}
            reason = f"made with --codec-weights {f.attrs.get('codec_weights')}, not {weights}"
    except OSError as e:
        reason = f"unreadable: {e}"
    aside = h5_path.with_suffix(".old.h5")
    log.warning("%s is %s: moved to %s, computing all codes again", h5_path, reason, aside)
    shutil.move(h5_path, aside)
    return {}


def _codes_array(h5_path: Path, key: str, shape) -> TemporalArray:
    """The manifest NumpyHdf5Writer.store_array returns, for codes that are already stored."""
    array = Array(storage_type=NumpyHdf5Writer.name, storage_path=str(h5_path), storage_key=key, shape=list(shape))
    return TemporalArray(array=array, temporal_dim=0, frame_shift=1 / FRAME_RATE, start=0)


def code_frames(duration: float) -> int:
    """Frames stored per cut: round(duration x 75), what lhotse's `cut.load_codes()` reads back. Encodec itself
    yields ceil(samples / 320); a last frame that covers less than half a frame (6.7 ms) of audio is dropped."""
    return seconds_to_frames(duration, 1 / FRAME_RATE)


def compute_codes(cuts: CutSet, h5_path: Path, codec: Codec) -> CutSet:
    """Encode every cut's audio and store int16 codes (frames, 8) under the cut id in h5_path.

    Resumable: codes already stored for the same audio file (path, size, mtime) with the right number of
    frames (`code_frames(cut.duration)`) are kept; only the rest is computed.
    Returns the cuts with `cut.codes` attached.
    """
    h5_path = h5_path.resolve()
    stored = _stored_codes(h5_path, codec.weights)
    expected = {c.id: (code_frames(c.duration), NUM_QUANTIZERS) for c in cuts}
    todo = [c for c in cuts if stored.get(c.id) != (expected[c.id], _fingerprint(c))]
    log.info("codes: %d cuts, %d already in %s, %d to encode", len(cuts), len(cuts) - len(todo), h5_path, len(todo))
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    with NumpyHdf5Writer(h5_path, mode="a") as writer, \
            tqdm(total=round(sum(c.duration for c in todo)), desc="encodec", unit="s audio") as bar:
        writer.hdf.attrs["codec_weights"] = codec.weights
        # One codec batch at a time, grouped by the codec's own rule (encode() then sees one batch): lhotse's
        # samplers bound the sum of durations, not count x longest, the padded audio the encoder runs on.
        batches = length_batches([c.num_samples for c in todo], int(codec.max_batch_seconds * SAMPLE_RATE))
        for group in ([todo[i] for i in batch] for batch in batches):
            waves = [torch.from_numpy(c.load_audio()[0]) for c in group]  # (T,) each, mono 24 kHz
            for cut, codes in zip(group, codec.encode(waves)):  # (frames, 8) each
                if cut.id in writer.hdf:
                    del writer.hdf[cut.id]
                codes = codes[: expected[cut.id][0]].numpy().astype(np.int16)  # (frames, 8)
                writer.store_array(cut.id, codes, frame_shift=1 / FRAME_RATE, temporal_dim=0)
                writer.hdf[cut.id].attrs["source"] = _fingerprint(cut)
            writer.hdf.flush()
            bar.update(round(sum(c.duration for c in group)))
    return CutSet.from_cuts(_with_codes(c, h5_path, expected[c.id]) for c in cuts)


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
        cuts.to_file(out / f"cuts_{part}_codes.jsonl.gz")


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
        part_kept.to_file(out / f"cuts_{part}_text.jsonl.gz")
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
        cuts.to_file(out / f"cuts_{name}.jsonl.gz")
    summary = update_summary(data_dir, "split", split_stats(splits))
    print(format_summary(summary, read_rejections(data_dir), data_dir))
    return summary
