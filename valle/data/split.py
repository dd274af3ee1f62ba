"""The train / dev / test split: LibriTTS parts by name (dev-* -> dev, test-* -> test), a custom corpus at random
(seeded and independent of input order, so the same data always splits the same way); held-out speakers -> test."""

from __future__ import annotations

import random

from lhotse import CutSet

from valle.errors import UserError

SPLITS = ("train", "dev", "test")
# LibriTTS parts -> our splits; every other part (train-*) is training data.
PART_SPLITS = {"dev-clean": "dev", "dev-other": "dev", "test-clean": "test", "test-other": "test"}


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
        raise UserError(f"--heldout-speakers: {sorted(heldout - known)} not in the corpus; "
                        f"speakers: {sorted(known)[:20]}")
    rest = sorted((c for c in cuts if c.supervisions[0].speaker not in heldout), key=lambda c: c.id)
    if not rest:
        raise UserError("--heldout-speakers holds out every speaker: nothing is left for training")
    random.Random(seed).shuffle(rest)
    n_dev, n_test = _split_sizes(len(rest), dev_ratio, test_ratio)
    return {"dev": CutSet.from_cuts(rest[:n_dev]),
            "test": CutSet.from_cuts(rest[n_dev:n_dev + n_test]
                                     + [c for c in cuts if c.supervisions[0].speaker in heldout]),
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
