"""Synthetic prepared data of any size, for the scale benchmark and the tests: cuts_{train,dev}.jsonl.gz whose codes
are random int16 arrays in one small HDF5 file (cuts of equal length share one array) and whose text tokens are
random ids of the vallex tokenizer. The manifests are written line by line, so a million cuts need no more memory
than ten. The audio files they name do not exist: train with --codec-weights none."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import h5py
import numpy as np

from valle.audio import SAMPLE_RATE
from valle.codec import FRAME_RATE, code_frames
from valle.config import NUM_QUANTIZERS
from valle.text import get_tokenizer, save_tokenizer_info

LENGTHS = tuple(round(1.0 + 0.25 * i, 2) for i in range(37))  # 1-10 s: the durations, one codes array each
SPEAKERS = 100


def _template(split: str, duration: float, codes: Path, text_ids: list[int]) -> str:
    """One cut as lhotse writes it (a recording, one supervision with text tokens, codes in `codes`), as a JSON
    line with the placeholders CUT_ID and SPEAKER (a million cuts are written in seconds, not json.dumps'd)."""
    samples = round(duration * SAMPLE_RATE)
    cut = {
        "id": "CUT_ID", "start": 0.0, "duration": duration, "channel": 0, "type": "MonoCut",
        "supervisions": [{"id": "CUT_ID", "recording_id": "CUT_ID", "start": 0.0, "duration": duration, "channel": 0,
                          "text": "synthetic", "speaker": "SPEAKER",
                          "custom": {"text_ids": text_ids, "text_langs": [0] * len(text_ids)}}],
        "recording": {"id": "CUT_ID", "sources": [{"type": "file", "channels": [0], "source": "/synthetic/CUT_ID.wav"}],
                      "sampling_rate": SAMPLE_RATE, "num_samples": samples, "duration": duration},
        "custom": {"codes": {"array": {"storage_type": "numpy_hdf5", "storage_path": str(codes),
                                       "storage_key": f"len{duration}",
                                       "shape": [code_frames(duration), NUM_QUANTIZERS]},
                             "temporal_dim": 0, "frame_shift": 1 / FRAME_RATE, "start": 0}},
    }
    return json.dumps(cut) + "\n"


def write_synthetic(out: Path, num_train: int, num_dev: int = 20, seed: int = 0) -> Path:
    """out/cuts_train.jsonl.gz (num_train cuts), out/cuts_dev.jsonl.gz, out/codes.h5, out/text_tokenizer.json."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    codes = (out / "codes.h5").resolve()
    gen = np.random.default_rng(seed)
    with h5py.File(codes, "w") as f:
        for seconds in LENGTHS:
            f.create_dataset(f"len{seconds}", data=gen.integers(0, 1024, (code_frames(seconds), NUM_QUANTIZERS),
                                                                dtype=np.int16))
    for split, n in (("train", num_train), ("dev", num_dev)):
        texts = [[rng.randrange(5, 70) for _ in range(int(seconds * 12))] for seconds in LENGTHS]  # 12 phonemes/s
        templates = [_template(split, seconds, codes, ids) for seconds, ids in zip(LENGTHS, texts)]
        with gzip.open(out / f"cuts_{split}.jsonl.gz", "wt", compresslevel=1) as f:
            for i in range(n):
                line = templates[rng.randrange(len(templates))]
                f.write(line.replace("CUT_ID", f"{split}-{i:08d}").replace("SPEAKER", f"spk{i % SPEAKERS}"))
    save_tokenizer_info(get_tokenizer("vallex"), out)
    return out
