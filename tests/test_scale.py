"""Corpora of any size: sharded code extraction, lazy manifests, Shar, several processes and nodes."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
from lhotse import CutSet

from valle.data import pipeline
from valle.data.codes import shard_path
from valle.data.normalize import NormalizeOptions


@pytest.fixture
def normalized(tmp_path, write_audio):
    """A data dir after the normalize stage: 8 cuts of 0.4-1.1 s by 2 speakers."""
    root, data = tmp_path / "corpus", tmp_path / "data"
    for i in range(8):
        write_audio(root / f"spk{i % 2}" / f"u{i}.wav", seconds=0.4 + 0.1 * i).with_suffix(".txt").write_text(
            f"Sentence number {i + 1}.")
    pipeline.stage_scan(root, data)
    pipeline.stage_normalize(data, NormalizeOptions(min_duration=0.1))
    return data


@pytest.fixture
def small_batches(random_codec):
    """The random codec encoding at most 1.5 s of padded audio per call: the 8 cuts make several batches."""
    codec = copy.copy(random_codec)
    codec.max_batch_seconds = 1.5
    return codec


def codes_of(data) -> dict[str, np.ndarray]:
    cuts = CutSet.from_file(data / "tokenized" / "cuts_all_codes.jsonl.gz")
    return {c.id: c.load_codes() for c in cuts}


@pytest.mark.slow
def test_two_worker_processes_give_the_codes_of_one_and_a_killed_shard_resumes_alone(normalized, small_batches,
                                                                                    tmp_path, single_thread):
    one = tmp_path / "one"
    os.system(f"cp -r {normalized} {one}")
    pipeline.stage_codes(one, small_batches)
    pipeline.stage_codes(normalized, small_batches, num_workers=2)
    h5 = normalized / "tokenized" / "codes_all.h5"
    shards = [shard_path(h5, k, 2) for k in range(2)]
    assert all(s.is_file() and s.with_name(s.name + ".done").is_file() for s in shards) and not h5.exists()
    sharded, single = codes_of(normalized), codes_of(one)
    assert sharded.keys() == single.keys() and len(sharded) == 8
    assert all(np.array_equal(sharded[k], single[k]) for k in single)
    cuts = CutSet.from_file(normalized / "tokenized" / "cuts_all_codes.jsonl.gz")
    assert {c.codes.array.storage_path for c in cuts} == {str(s) for s in shards}  # both shards have cuts

    # shard 1 was killed: its marker is missing and its store half there; shard 0 is done
    shards[1].with_name(shards[1].name + ".done").unlink()
    shards[1].unlink()
    before = shards[0].stat().st_mtime_ns
    pipeline.stage_codes(normalized, small_batches, num_workers=2)
    assert shards[0].stat().st_mtime_ns == before  # not encoded again
    again = codes_of(normalized)
    assert all(np.array_equal(again[k], single[k]) for k in single)
