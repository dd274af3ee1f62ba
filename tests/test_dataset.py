"""Samplers of valle/data/dataset.py: bucketing only when it makes sense, exact resume through lhotse's state."""

import warnings

import pytest
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler
from lhotse.testing.dummies import dummy_cut

from valle.config import DataConfig
from valle.data.dataset import fast_forward, make_sampler
from valle.errors import UserError


def cuts(n: int) -> CutSet:
    return CutSet.from_cuts(dummy_cut(i, duration=0.6 + 0.37 * (i % 9)) for i in range(n))  # 0.6 .. 3.56 s


def batches(sampler, epoch: int, skip: int = 0) -> list[list[str]]:
    if skip:
        assert fast_forward(sampler, epoch, skip)
    else:
        sampler.set_epoch(epoch)
    return [[c.id for c in batch] for batch in sampler]


@pytest.mark.parametrize("n,num_buckets,kind", [
    (1, 10, DynamicCutSampler), (2, 10, DynamicCutSampler),  # lhotse finds no bucket boundary in 2 cuts
    (30, 1, DynamicCutSampler), (5, 10, DynamicBucketingSampler), (30, 10, DynamicBucketingSampler),
])
def test_bucketing_only_when_there_are_two_buckets(n, num_buckets, kind):
    cfg = DataConfig(max_duration=5.0, num_buckets=num_buckets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's "Mean of empty slice" from a bucketer without buckets
        sampler = make_sampler(cuts(n), cfg, train=True, seed=3)
        got = batches(sampler, epoch=1)
    assert type(sampler) is kind
    assert sorted(i for b in got for i in b) == sorted(c.id for c in cuts(n))  # every cut once
    assert all(sum(0.6 + 0.37 * (int(i[-4:]) % 9) for i in b) <= 5.0 for b in got)
    assert len(got) > 1 or n <= 2


@pytest.mark.parametrize("num_buckets", [1, 4])
def test_resume_continues_at_the_next_batch_of_the_epoch(num_buckets):
    cfg = DataConfig(max_duration=5.0, num_buckets=num_buckets)
    full = batches(make_sampler(cuts(30), cfg, train=True, seed=3), epoch=2)
    assert len(full) >= 8 and full != batches(make_sampler(cuts(30), cfg, train=True, seed=3), epoch=3)
    for skip in (1, 5, len(full)):
        assert batches(make_sampler(cuts(30), cfg, train=True, seed=3), epoch=2, skip=skip) == full[skip:]
    assert not fast_forward(make_sampler(cuts(30), cfg, train=True, seed=3), 2, len(full) + 1)


def test_bad_batch_settings_are_user_errors():
    with pytest.raises(UserError, match="--num-buckets 0: need 1 or more"):
        DataConfig(num_buckets=0)
    with pytest.raises(UserError, match="--max-duration -1.0: need a value > 0"):
        DataConfig(max_duration=-1.0)
