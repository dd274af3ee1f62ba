"""Shared fixtures: tiny generated audio (no files from outside the test) and one random Encodec per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def speechlike(seconds: float, rate: int, f0: float = 150.0, channels: int = 1) -> np.ndarray:
    """A voiced-sounding test signal: harmonics of f0 under a syllable-rate envelope, float32 in [-0.5, 0.5].
    Shape (T,) for mono, (T, channels) otherwise (each extra channel a quieter copy)."""
    t = np.arange(int(round(seconds * rate))) / rate
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8) if f0 * h < rate / 2)
    x = (0.25 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x] + [x * (0.8 ** c) for c in range(1, channels)], axis=1)


def pytest_collection_modifyitems(items):
    """A test that needs the mini corpus is slow: preparing it takes minutes on a 2-core CPU (once per run)."""
    for item in items:
        if "mini_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def write_audio():
    """write_audio(path, seconds=1.0, rate=24000, channels=1, subtype=None, silent=False) -> path.
    The format follows the extension (wav/flac/mp3/ogg); subtype e.g. PCM_U8, FLOAT, PCM_24."""

    def write(path, seconds: float = 1.0, rate: int = 24000, channels: int = 1, subtype: str | None = None,
              silent: bool = False) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = speechlike(seconds, rate, channels=channels)
        sf.write(str(path), np.zeros_like(data) if silent else data, rate, subtype=subtype)
        return path

    return write


@pytest.fixture
def fake_libritts(write_audio):
    """fake_libritts(root, {part: speaker}) -> root: the LibriTTS layout lhotse's prepare_libritts reads
    (part/speaker/chapter/utt.wav + .normalized.txt, chapter .trans.tsv and .book.tsv), 2 utterances a part."""

    def make(root, parts: dict[str, str]) -> Path:
        for part, speaker in parts.items():
            chapter = Path(root) / part / speaker / "1000"
            rows = []
            for i in range(2):
                utt = f"{speaker}_1000_{i:06d}_000000"
                write_audio(chapter / f"{utt}.wav", seconds=0.6)
                (chapter / f"{utt}.normalized.txt").write_text("Hello there.")
                rows.append(f"{utt}\tHello there!\tHello there.")
            (chapter / f"{speaker}_1000.trans.tsv").write_text("\n".join(rows) + "\n")
            (chapter / f"{speaker}_1000.book.tsv").write_text("\n".join(r + "\t0\t0\t0\t20.0" for r in rows) + "\n")
        return Path(root)

    return make


@pytest.fixture
def single_thread():
    """Tiny tensors gain nothing from threads, and an oversubscribed CPU makes OpenMP spin: use one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_codec():
    """Encodec 24 kHz with the seeded random weights (building it costs ~1 s: once per session)."""
    import torch

    from valle.codec import Codec

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # built before any function fixture such as single_thread
    try:
        return Codec.from_weights("random")
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory) -> Path:
    """The mini demo corpus (espeak-ng voices, random Encodec), prepared once per test run (for all its workers):
    its data/tokenized folder. Beside data/ are corpus/ and prepare.log (what prepare.sh printed). Tests that change
    the prepared data work on a copy (see tests/test_prepare_recipe.py)."""
    from filelock import FileLock

    # one preparation for the whole run: under pytest-xdist the workers' temporary folders share a parent of this
    # run's own (pytest-N/popen-gwK), and the first worker to need the corpus prepares it there for all
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "mini-corpus"
    with FileLock(str(shared / "mini-corpus.lock")):
        if not (root / "prepare.log").is_file():
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
            proc = subprocess.run([str(REPO / "egs" / "mini" / "prepare.sh"), "--corpus-dir", str(root / "corpus"),
                                   "--data-dir", str(root / "data")], env=env, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            (root / "prepare.log").write_text(proc.stdout + proc.stderr)
    return root / "data" / "tokenized"


def metrics(exp: Path, split: str) -> list[dict]:
    """The records of one split ("train" or "valid") in an experiment folder's log/metrics.jsonl."""
    lines = (exp / "log" / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def train_metrics_so_far(exp: Path) -> list[dict]:
    """The train records a running trainer has written so far (none yet, or a line half-written: [])."""
    try:
        return metrics(exp, "train")
    except (FileNotFoundError, json.JSONDecodeError):
        return []
