"""Training data: cuts -> bucketed batches of padded text tokens and audio codes."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from torch.nn.utils.rnn import pad_sequence

from valle.errors import UserError
from valle.config import DataConfig, ModelConfig


def load_cuts(manifest_dir: str | Path, split: str) -> CutSet:
    """cuts_<split>.jsonl.gz of a prepared corpus; a missing or empty file is a UserError."""
    path = Path(manifest_dir) / f"cuts_{split}.jsonl.gz"
    if not path.is_file():
        raise UserError(f"{path} not found: run the recipe's prepare.sh first (or pass --manifest-dir)")
    cuts = CutSet.from_file(path).to_eager()
    if len(cuts) == 0:
        raise UserError(f"{path} holds no cuts: prepare the corpus again with more data")
    return cuts


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


class _SkipFirst(torch.utils.data.Sampler):
    """Yields the wrapped sampler's batches after the first `n` (exact resume inside an epoch)."""

    def __init__(self, sampler: DynamicBucketingSampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.n, None)


def filter_train_cuts(cuts: CutSet, cfg: DataConfig) -> CutSet:
    """Duration filter for training (dev and test are never filtered)."""
    kept = cuts.filter(lambda c: cfg.filter_min_duration <= c.duration <= cfg.filter_max_duration).to_eager()
    if len(kept) == 0:
        raise UserError(
            f"no training cut lasts between {cfg.filter_min_duration} and {cfg.filter_max_duration} s: "
            "change --filter-min-duration/--filter-max-duration")
    return kept


def make_loader(cuts: CutSet, cfg: DataConfig, pad_id: int, model_config: ModelConfig, train: bool,
                seed: int = 0, epoch: int = 0,
                skip_batches: int = 0, world_size: int = 1, rank: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader over bucketed batches; each DDP rank gets its own shard of batches."""
    warnings.filterwarnings("ignore", message="You are using DynamicBucketingSampler with an eagerly read CutSet")
    sampler = DynamicBucketingSampler(
        cuts, max_duration=cfg.max_duration, num_buckets=min(cfg.num_buckets, len(cuts)),
        shuffle=train and cfg.shuffle, drop_last=train and cfg.drop_last, seed=seed,
        quadratic_duration=cfg.quadratic_duration or None, world_size=world_size, rank=rank)
    sampler.set_epoch(epoch)
    # A generator of its own: the loader must not draw from the global RNG (dropout, NAR stages),
    # or a run resumed mid-epoch would see a different random stream than an uninterrupted one.
    return torch.utils.data.DataLoader(
        SpeechDataset(pad_id, model_config), sampler=_SkipFirst(sampler, skip_batches), batch_size=None,
        num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed + epoch))
