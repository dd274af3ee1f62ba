"""Training data: cuts -> bucketed batches of padded text tokens and audio codes."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler
from lhotse.dataset.sampling.base import CutSampler, TimeConstraint
from lhotse.dataset.sampling.dynamic_bucketing import estimate_duration_buckets
from torch.nn.utils.rnn import pad_sequence

from valle.errors import UserError
from valle.config import DataConfig, ModelConfig

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


def filter_train_cuts(cuts: CutSet, cfg: DataConfig) -> CutSet:
    """Duration filter for training (dev and test are never filtered)."""
    kept = cuts.filter(lambda c: cfg.filter_min_duration <= c.duration <= cfg.filter_max_duration).to_eager()
    if len(kept) == 0:
        raise UserError(
            f"no training cut lasts between {cfg.filter_min_duration} and {cfg.filter_max_duration} s: "
            "change --filter-min-duration/--filter-max-duration")
    return kept


def make_sampler(cuts: CutSet, cfg: DataConfig, train: bool, seed: int = 0, world_size: int = 1,
                 rank: int = 0) -> CutSampler:
    """Batches of at most `max_duration` seconds: from duration buckets, or in plain order when the cuts make
    only one bucket (lhotse's DynamicBucketingSampler needs two, and warns "Mean of empty slice" without)."""
    if cfg.num_buckets < 1:
        raise UserError(f"--num-buckets {cfg.num_buckets}: use 1 (no bucketing) or more")
    if cfg.max_duration <= 0:
        raise UserError(f"--max-duration {cfg.max_duration}: seconds of audio per batch must be > 0")
    common = dict(max_duration=cfg.max_duration, shuffle=train and cfg.shuffle, drop_last=train and cfg.drop_last,
                  seed=seed, quadratic_duration=cfg.quadratic_duration or None, world_size=world_size, rank=rank)
    bins = []  # bucket boundaries as lhotse estimates them; with few cuts it may find none (one bucket)
    if min(cfg.num_buckets, len(cuts)) >= 2:
        constraint = TimeConstraint(max_duration=cfg.max_duration, quadratic_duration=common["quadratic_duration"])
        bins = estimate_duration_buckets(itertools.islice(cuts, BINS_ESTIMATE_CUTS), min(cfg.num_buckets, len(cuts)),
                                         constraint)
    with warnings.catch_warnings():  # the cuts are in memory on purpose: they are small
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


def make_loader(cuts: CutSet, cfg: DataConfig, pad_id: int, model_config: ModelConfig, train: bool,
                seed: int = 0, epoch: int = 0,
                skip_batches: int = 0, world_size: int = 1, rank: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader over this rank's batches of `cuts` for `epoch`, after the first `skip_batches` (resume)."""
    sampler = make_sampler(cuts, cfg, train, seed=seed, world_size=world_size, rank=rank)
    if not skip_batches:
        sampler.set_epoch(epoch)
    elif not fast_forward(sampler, epoch, skip_batches):
        sampler = []  # nothing left of this epoch
    # A generator of its own: the loader must not draw from the global RNG (dropout, NAR stages),
    # or a run resumed mid-epoch would see a different random stream than an uninterrupted one.
    return torch.utils.data.DataLoader(
        SpeechDataset(pad_id, model_config), sampler=sampler, batch_size=None,
        num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed + epoch))
