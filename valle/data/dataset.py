"""Training data: cuts -> bucketed batches of padded text tokens and audio codes."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler, IterableDatasetWrapper
from lhotse.dataset.sampling.base import CutSampler, TimeConstraint
from lhotse.dataset.sampling.dynamic_bucketing import estimate_duration_buckets
from torch.nn.utils.rnn import pad_sequence

from valle.config import DataConfig, ModelConfig
from valle.data.files import open_cuts, write_text
from valle.data.shar import SHARDS_FILE, shar_cuts, shar_manifest_cuts
from valle.errors import UserError

log = logging.getLogger(__name__)
BINS_ESTIMATE_CUTS = 10000  # cuts that bucket boundaries are estimated from (lhotse's default)


class SpeechDataset(torch.utils.data.Dataset):
    """Maps a CutSet (one batch, chosen by the sampler) to padded tensors."""

    def __init__(self, pad_id: int, model_config: ModelConfig):
        self.pad_id, self.model_config = pad_id, model_config

    def __getitem__(self, cuts: CutSet) -> dict:
        cuts = cuts.sort_by_duration(ascending=False)
        sups = [cut.supervisions[0] for cut in cuts]
        codes = [torch.from_numpy(cut.load_codes().astype(np.int64)) for cut in cuts]  # (T_i, 8) each
        framed = [self.model_config.frame_text(s.custom["text_ids"], s.custom["text_langs"]) for s in sups]
        text = [torch.tensor(ids, dtype=torch.long) for ids, _ in framed]  # (L_i,) each
        langs = [torch.tensor(langs, dtype=torch.long) for _, langs in framed]  # (L_i,) each
        return {
            "cut_ids": [cut.id for cut in cuts],
            "text_tokens": pad_sequence(text, batch_first=True, padding_value=self.pad_id),  # (B, L)
            "text_lens": torch.tensor([len(t) for t in text]),  # (B,)
            "text_langs": pad_sequence(langs, batch_first=True, padding_value=0),  # (B, L)
            "codes": pad_sequence(codes, batch_first=True, padding_value=0),  # (B, T, 8)
            "code_lens": torch.tensor([len(c) for c in codes]),  # (B,)
        }


def padding_ratio(batch: dict) -> float:
    """Share of audio frames in the batch that are padding."""
    b, t, _ = batch["codes"].shape
    return 1.0 - batch["code_lens"].sum().item() / max(b * t, 1)


def _lasts(low: float, high: float, cut) -> bool:
    return low <= cut.duration <= high


def filter_train_cuts(cuts: CutSet, cfg: DataConfig) -> CutSet:
    """Duration filter for training (dev and test are never filtered); lazy when `cuts` is (a function, not a
    lambda: a lazy CutSet is pickled into DataLoader workers)."""
    kept = cuts.filter(functools.partial(_lasts, cfg.filter_min_duration, cfg.filter_max_duration))
    if next(iter(kept), None) is None:
        raise UserError(
            f"no training cut lasts between {cfg.filter_min_duration} and {cfg.filter_max_duration} s: "
            "change --filter-min-duration/--filter-max-duration")
    return kept


def duration_bins(cuts: CutSet, cfg: DataConfig, store: Path | None = None, made_from: Path | None = None,
                  write: bool = True) -> list[float]:
    """Bucket boundaries of the DynamicBucketingSampler, estimated once (lhotse's estimate_duration_buckets) from
    the first BINS_ESTIMATE_CUTS cuts and kept in `store` (JSON, beside the data) for the next runs with the same
    manifest (`made_from`: its size and time) and bucket settings. [] when the cuts make fewer than two buckets.
    Only the process that may `write` stores them (one rank); every rank gets the same values."""
    stat = made_from.stat() if made_from is not None else None
    key = {"num_buckets": cfg.num_buckets, "quadratic_duration": cfg.quadratic_duration,
           "filter": [cfg.filter_min_duration, cfg.filter_max_duration], "sample": BINS_ESTIMATE_CUTS,
           "manifest": [stat.st_size, stat.st_mtime_ns] if stat else None}
    if store is not None and store.is_file():
        saved = json.loads(store.read_text())
        if saved.get("key") == key:
            return saved["bins"]
    sample = list(itertools.islice(cuts, BINS_ESTIMATE_CUTS))  # lazy cuts: only these are read
    bins = []  # with few cuts lhotse may find no boundary (one bucket)
    if min(cfg.num_buckets, len(sample)) >= 2:
        constraint = TimeConstraint(max_duration=cfg.max_duration, quadratic_duration=cfg.quadratic_duration or None)
        bins = estimate_duration_buckets(sample, min(cfg.num_buckets, len(sample)), constraint)
    if store is not None and write:
        try:
            write_text(store, json.dumps({"key": key, "bins": bins}) + "\n", "the duration bins")
        except OSError as e:  # data on a read-only disk: estimated again next time
            log.warning("duration bins not stored in %s (%s): estimated again at every start", store, e)
    return bins


def make_sampler(cuts: CutSet, cfg: DataConfig, train: bool, bins: list[float] | None = None, seed: int = 0,
                 world_size: int = 1, rank: int = 0) -> CutSampler:
    """Batches of at most `max_duration` seconds: from duration buckets (`bins`: `duration_bins`, estimated here
    when not given), or in plain order when the cuts make one bucket (lhotse's DynamicBucketingSampler needs
    two, and warns "Mean of empty slice" without)."""
    common = dict(max_duration=cfg.max_duration, shuffle=train and cfg.shuffle, drop_last=train and cfg.drop_last,
                  seed=seed, quadratic_duration=cfg.quadratic_duration or None, world_size=world_size, rank=rank)
    bins = duration_bins(cuts, cfg) if bins is None else bins
    with warnings.catch_warnings():  # a small dev set or a test's cuts may be in memory on purpose
        warnings.filterwarnings("ignore", message="You are using Dynamic.*Sampler with an eagerly read CutSet")
        if not bins:
            return DynamicCutSampler(cuts, **common)
        return DynamicBucketingSampler(cuts, duration_bins=bins, **common)


def fast_forward(sampler: CutSampler, epoch: int, batches: int) -> bool:
    """Resume `sampler` at batch `batches` of `epoch` through lhotse's own state_dict / load_state_dict;
    False when the epoch has fewer than `batches` batches (other data or batch settings than the run had).

    The state says how many batches were *trained on*, not what a live sampler's state_dict() says: DataLoader
    workers draw batches ahead of training (measured: with --num-workers 2, a sampler had drawn 7 batches when
    3 had been trained on), so its own count would skip batches that were never seen."""
    sampler.set_epoch(epoch)
    state = sampler.state_dict()
    diagnostics = state["diagnostics"]["stats_per_epoch"][epoch]
    diagnostics.update(kept_batches=batches, discarded_batches=0)
    try:
        sampler.load_state_dict(state)  # lhotse iterates the first `batches` batches (cheap: no data is read)
    except StopIteration:
        return False
    return True


@dataclass
class Split:
    """One split as the trainer reads it, never whole: `cuts` lazily (the train ones filtered), for sampling a
    validation example and the like; `source`, what `make_loader` batches: the same cuts, or a Shar folder."""

    cuts: CutSet
    source: CutSet | Path
    bins: list[float]  # `duration_bins`, stored beside the data


def open_split(cfg: DataConfig, name: str, write_bins: bool) -> Split:
    """cuts_<name>.jsonl.gz of --manifest-dir (codes in HDF5), or <name>/ of --shar-dir; `write_bins`: this
    process stores the duration bins (one rank does)."""
    if cfg.shar_dir:
        folder = Path(cfg.shar_dir) / name
        cuts, source = shar_manifest_cuts(folder), folder
        store, made_from = folder / "duration_bins.json", folder / SHARDS_FILE
    else:
        path = Path(cfg.manifest_dir) / f"cuts_{name}.jsonl.gz"
        cuts = open_cuts(path, "run the recipe's prepare.sh first (or pass --manifest-dir)")
        source, store, made_from = cuts, path.with_name(f"cuts_{name}.duration_bins.json"), path
    if name == "train":
        cuts = filter_train_cuts(cuts, cfg)
        source = cuts if isinstance(source, CutSet) else source
    return Split(cuts, source, duration_bins(cuts, cfg, store, made_from, write_bins))


def make_loader(split: Split, cfg: DataConfig, pad_id: int, model_config: ModelConfig, train: bool, seed: int = 0,
                epoch: int = 0, skip_batches: int = 0, world_size: int = 1, rank: int = 0) -> Iterable[dict]:
    """This rank's batches of `split` for `epoch`, after the first `skip_batches` (resume)."""
    # A generator of its own: the loader must not draw from the global RNG (dropout, NAR stages),
    # or a run resumed mid-epoch would see a different random stream than an uninterrupted one.
    loader_args = dict(batch_size=None, num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                       generator=torch.Generator().manual_seed(seed + epoch))
    if isinstance(split.source, Path):
        return _shar_loader(split, cfg, SpeechDataset(pad_id, model_config), train, seed, epoch, skip_batches,
                            loader_args)
    sampler = make_sampler(split.source, cfg, train, bins=split.bins, seed=seed, world_size=world_size, rank=rank)
    if not skip_batches:
        sampler.set_epoch(epoch)
    elif not fast_forward(sampler, epoch, skip_batches):
        sampler = []  # nothing left of this epoch
    return torch.utils.data.DataLoader(SpeechDataset(pad_id, model_config), sampler=sampler, **loader_args)


def _shar_loader(split: Split, cfg: DataConfig, dataset: SpeechDataset, train: bool, seed: int, epoch: int,
                 skip_batches: int, loader_args: dict) -> Iterable[dict]:
    """Batches from a Shar folder: each rank and worker reads its own shards (lhotse splits them, after shuffling
    them by seed + epoch, the same on every rank) and batches them with a sampler of its own. Resuming reads the
    epoch's first `skip_batches` batches again and drops them: the order is fixed by the seeds, so the batches
    after them are those of an uninterrupted run."""
    cuts = shar_cuts(split.source, split_for_dataloading=True, shuffle_shards=train and cfg.shuffle, seed=seed + epoch)
    if train:
        cuts = cuts.filter(functools.partial(_lasts, cfg.filter_min_duration, cfg.filter_max_duration))
    sampler = make_sampler(cuts, cfg, train, bins=split.bins, seed=seed, world_size=1, rank=0)  # shards split already
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(IterableDatasetWrapper(dataset, sampler), **loader_args)
    return itertools.islice(loader, skip_batches, None) if skip_batches else loader
