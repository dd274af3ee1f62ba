"""The preparation stages as functions, in the order of valle.data.stages: each reads what the stage before it
wrote in the data folder (DATA) and writes its own, with its reports.

  corpus      -> DATA/manifests/entries_<part>.jsonl            (stage_scan: your recordings; stage_scan_libritts)
  normalize   -> DATA/manifests/cuts_<part>.jsonl.gz            normalized cuts (+ audio/ copies, conversions.tsv)
  codes       -> DATA/tokenized/codes_<part>.h5                 int16 codes (T, 8) per cut id (NumpyHdf5Writer)
                 DATA/tokenized/cuts_<part>_codes.jsonl.gz      + cut.codes
  text        -> DATA/tokenized/cuts_<part>_text.jsonl.gz       + supervision.custom phonemes / text_ids / text_langs
                 DATA/tokenized/text_tokenizer.json
  split       -> DATA/tokenized/cuts_{train,dev,test}.jsonl.gz
Every stage also updates DATA/rejected.tsv and DATA/summary.json (valle.data.rejections).
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

from valle.codec import Codec
from valle.data.codes import compute_codes_sharded
from valle.data.files import load_cuts, save_cuts, write_text
from valle.data.normalize import Normalized, NormalizeOptions, normalize_entries, normalize_summary
from valle.data.rejections import format_summary, read_rejections, require_some, update_summary, write_rejections
from valle.data.sources import Deduplicator, Entry, load_entries, read_corpus, read_libritts, save_entries
from valle.data.split import split_by_parts, split_stats
from valle.data.text_tokens import attach_text_tokens, build_espeak_table
from valle.errors import UserError

log = logging.getLogger(__name__)


def stage_scan(corpus: str | Path, data_dir: Path) -> list[Entry]:
    """Custom corpus -> data_dir/manifests/entries_all.jsonl (+ scan rejections)."""
    entries, rejections = read_corpus(corpus)
    write_rejections(data_dir, "scan", rejections)
    update_summary(data_dir, "scan", {"corpus": str(corpus), "found": len(entries), "rejected": len(rejections)})
    log.info("corpus %s: %d utterances found, %d rejected while reading", corpus, len(entries), len(rejections))
    require_some(len(entries), len(entries) + len(rejections), rejections, str(corpus))
    _remove_entries(data_dir)
    save_entries(entries, data_dir / "manifests" / "entries_all.jsonl")
    return entries


def _remove_entries(data_dir: Path) -> None:
    """The entries of an earlier scan: its parts may not be this one's."""
    for path in (data_dir / "manifests").glob("entries_*.jsonl"):
        path.unlink()


def stage_scan_libritts(corpus_dir: Path, parts: list[str], data_dir: Path) -> list[Entry]:
    """LibriTTS parts unpacked in corpus_dir -> data_dir/manifests/entries_<part>.jsonl (+ scan rejections)."""
    entries, rejections, dedup = {}, [], Deduplicator()
    for part in parts:
        entries[part], part_rejections = read_libritts(corpus_dir / part, dedup)
        rejections += part_rejections
        log.info("LibriTTS %s: %d utterances, %d files rejected", part, len(entries[part]), len(part_rejections))
    found = sum(map(len, entries.values()))
    write_rejections(data_dir, "scan", rejections)
    update_summary(data_dir, "scan", {"corpus": str(corpus_dir), "parts": parts, "found": found,
                                      "rejected": len(rejections)})
    require_some(found, found + len(rejections), rejections, str(corpus_dir))
    _remove_entries(data_dir)
    for part, part_entries in entries.items():
        save_entries(part_entries, data_dir / "manifests" / f"entries_{part}.jsonl")
    return [e for part_entries in entries.values() for e in part_entries]


def stage_normalize(data_dir: Path, opts: NormalizeOptions, num_jobs: int = 1) -> dict:
    """Every entries_<part>.jsonl -> cuts_<part>.jsonl.gz, conversions.tsv, rejections, summary (printed)."""
    manifests = data_dir / "manifests"
    parts = sorted(p.name[len("entries_"):-len(".jsonl")] for p in manifests.glob("entries_*.jsonl"))
    if not parts:
        raise UserError(f"no {manifests}/entries_*.jsonl: run the corpus stage of prepare.sh first")
    for stale in manifests.glob("cuts_*.jsonl.gz"):  # parts of an earlier run that are gone now
        if stale.name[len("cuts_"):-len(".jsonl.gz")] not in parts:
            stale.unlink()
    total = Normalized()
    num_entries = 0
    for part in parts:
        entries = load_entries(manifests / f"entries_{part}.jsonl")
        num_entries += len(entries)
        result = normalize_entries(entries, data_dir / "audio", opts, num_jobs)
        save_cuts(result.cuts, manifests / f"cuts_{part}.jsonl.gz")
        for name in ("cuts", "rejections", "conversions", "infos"):
            getattr(total, name).extend(getattr(result, name))
    write_text(data_dir / "conversions.tsv", "".join(f"{p}\t{d}\n" for p, d in total.conversions))
    write_rejections(data_dir, "normalize", total.rejections)
    summary = update_summary(data_dir, "normalize", normalize_summary(total))
    print(format_summary(summary, read_rejections(data_dir), data_dir))
    require_some(len(total.cuts), num_entries, total.rejections, str(data_dir / "manifests"))
    return summary


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


def stage_codes(data_dir: Path, codec: Codec, num_workers: int = 1, rank: int = 0, world_size: int = 1) -> None:
    """manifests/cuts_<part> -> tokenized/codes_<part>[.<k>-of-<N>].h5 + tokenized/cuts_<part>_codes.jsonl.gz
    (resumable), in world_size x num_workers shards (`compute_codes_sharded`); rank 0 writes the manifests."""
    out = data_dir / "tokenized"
    parts = _parts(data_dir / "manifests", "cuts_", ".jsonl.gz")
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _remove_stale(out, "_codes.jsonl.gz", parts)
    for part in parts:
        cuts = compute_codes_sharded(load_cuts(data_dir / "manifests" / f"cuts_{part}.jsonl.gz"),
                                     out / f"codes_{part}.h5", codec, num_workers, rank, world_size)
        if cuts is not None:
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
        build_espeak_table(tokenizer, [load_cuts(out / f"cuts_{p}_codes.jsonl.gz") for p in parts], language)
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
                                                "rejected": len(rejections),
                                                "unknown_symbols": dict(unknown.most_common())})
    log.info("text tokens: %d kept, %d rejected, %d unknown symbol occurrence(s) %s",
             kept, len(rejections), sum(unknown.values()), dict(unknown.most_common(20)))
    require_some(kept, total, rejections, f"{out} (text stage)")
    return summary


def stage_split(data_dir: Path, dev_ratio: float, test_ratio: float, seed: int,
                heldout_speakers: list[str] = ()) -> dict:
    """tokenized/cuts_<part>_text -> tokenized/cuts_{train,dev,test}.jsonl.gz; prints the final summary."""

    out = data_dir / "tokenized"
    parts = {p: load_cuts(out / f"cuts_{p}_text.jsonl.gz") for p in _parts(out, "cuts_", "_text.jsonl.gz")}
    splits = split_by_parts(parts, dev_ratio, test_ratio, seed, heldout_speakers)
    for name, cuts in splits.items():
        save_cuts(cuts, out / f"cuts_{name}.jsonl.gz")
    summary = update_summary(data_dir, "split", split_stats(splits))
    print(format_summary(summary, read_rejections(data_dir), data_dir))
    return summary
