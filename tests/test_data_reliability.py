"""Data preparation under adverse conditions: a full disk, a corpus reached through symlinks, clips too short for
a codec frame. The disk-full tests mount a small tmpfs (root only; CI runs as root)."""

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from valle.codec import code_frames
from valle.data import codes, normalize, pipeline
from valle.data.files import open_cuts
from valle.data.normalize import NormalizeOptions, normalize_entries
from valle.data.sources import Entry, read_corpus
from valle.errors import UserError
from valle.storage import is_partial

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def small_disk(tmp_path):
    """small_disk(kilobytes) -> a folder on a tmpfs of that size, unmounted after the test."""
    mounted = []

    def mount(kilobytes: int):
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder, leave_kb: int):
    """A filler file that leaves about `leave_kb` KB free on folder's file system; returns its path."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave_kb * 1024))
    return filler


def noise_corpus(root, n: int = 3, seconds: float = 2.0):
    """n stereo 44.1 kHz files of noise (FLAC cannot compress it: each copy takes ~96 KB per 2 s)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / "spk" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), (0.3 * rng.standard_normal((int(seconds * 44100), 2))).astype(np.float32), 44100)
        path.with_suffix(".txt").write_text(f"Sentence {i}.")
    return root


def leftovers(folder):
    return [p for p in folder.rglob("*") if is_partial(p) or p.name.endswith(".tmp")]


def test_normalize_checks_free_space_first(tmp_path, small_disk):
    data = small_disk(128)
    pipeline.stage_scan(noise_corpus(tmp_path / "corpus"), data)
    with pytest.raises(UserError) as error:
        pipeline.stage_normalize(data, NormalizeOptions())
    line = str(error.value)
    assert line.startswith("not enough disk space for the normalised audio") and str(data / "audio") in line
    assert "needs about 281.2 KB" in line and "free;" in line
    assert not list((data / "audio").iterdir())


def test_normalize_disk_full_mid_write_keeps_files_whole_and_resumes(tmp_path, small_disk, monkeypatch):
    data = small_disk(1024)
    pipeline.stage_scan(noise_corpus(tmp_path / "corpus"), data)
    filler = fill(data, leave_kb=140)  # room for one copy, not for three
    monkeypatch.setattr(normalize, "check_free_space", lambda *a, **k: None)  # as if the disk filled after the check
    with pytest.raises(UserError, match=r"^the disk is full: writing normalised audio to .*\.flac failed \(.* free\)"):
        pipeline.stage_normalize(data, NormalizeOptions())
    assert not leftovers(data)
    for flac in (data / "audio").glob("*.flac"):
        assert sf.info(str(flac)).frames == 48000  # whole files only
    filler.unlink()
    pipeline.stage_normalize(data, NormalizeOptions())
    cuts = open_cuts(data / "manifests" / "cuts_all.jsonl.gz")
    assert len(cuts) == 3 and all(c.load_audio().shape == (1, 48000) for c in cuts)


@pytest.fixture
def normalized_on(tmp_path, write_audio):
    """normalized_on(data_dir): the normalize stage of 5 short mono 24 kHz clips (referenced, not copied)."""
    def make(data):
        for i in range(5):
            write_audio(tmp_path / "corpus" / f"u{i}.wav", seconds=0.5 + 0.1 * i).with_suffix(".txt").write_text("Hi.")
        pipeline.stage_scan(tmp_path / "corpus", data)
        pipeline.stage_normalize(data, NormalizeOptions())
        return data
    return make


def test_codes_stage_on_a_full_disk(small_disk, normalized_on, random_codec, monkeypatch):
    data = normalized_on(small_disk(512))
    filler = fill(data, leave_kb=8)
    with pytest.raises(UserError,
                       match=r"not enough disk space for the codes of 5 cut\(s\) at .*tokenized: needs about"):
        pipeline.stage_codes(data, random_codec)
    with monkeypatch.context() as m:  # the disk fills while encoding: HDF5 must not crash the process
        m.setattr(codes, "check_free_space", lambda *a, **k: None)
        m.setattr(codes, "PIECE_SECONDS", 1.0)  # a piece per group
        filler.unlink()
        filler = fill(data, leave_kb=4)
        with pytest.raises(UserError, match=r"^the disk is full: writing codes \(.*\.h5\) to .* failed"):
            pipeline.stage_codes(data, random_codec)
    assert not leftovers(data) and not (data / "tokenized" / "codes_all.h5").exists()
    filler.unlink()
    pipeline.stage_codes(data, random_codec)  # resumes
    cuts = open_cuts(data / "tokenized" / "cuts_all_codes.jsonl.gz")
    for cut in cuts:
        expected = random_codec.encode([torch.from_numpy(cut.load_audio()[0])])[0]  # (frames, 8)
        assert np.array_equal(cut.load_codes(), expected[: code_frames(cut.duration)].numpy())


def test_disk_full_while_writing_codes_is_one_line(normalized_on, tmp_path, random_codec, monkeypatch):
    """The same without root: the write fails as on a full disk."""
    data = normalized_on(tmp_path / "data")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the sync of the written codes file
    with pytest.raises(UserError, match=r"^the disk is full: writing codes \(1\.h5\) to .*1\.h5 failed \(.* free\); "
                                        r"free space .* run the stage again"):
        pipeline.stage_codes(data, random_codec)
    assert not leftovers(data)
    monkeypatch.undo()
    pipeline.stage_codes(data, random_codec)
    assert len(open_cuts(data / "tokenized" / "cuts_all_codes.jsonl.gz")) == 5


def test_damaged_store_is_moved_aside_not_crashing(normalized_on, tmp_path, random_codec, caplog):
    """A store cut short (e.g. a copy of the data folder interrupted): moved aside, its codes made again."""
    data = normalized_on(tmp_path / "data")
    pipeline.stage_codes(data, random_codec)
    h5 = data / "tokenized" / "codes_all.h5"
    whole = h5.read_bytes()
    h5.write_bytes(whole[: len(whole) // 2])
    pipeline.stage_codes(data, random_codec)
    assert "moved to" in caplog.text and h5.with_suffix(".old.h5").is_file()
    assert all(c.load_codes().shape[1] == 8 for c in open_cuts(data / "tokenized" / "cuts_all_codes.jsonl.gz"))


def test_symlinked_folders_are_followed_and_loops_reported(tmp_path, write_audio):
    root, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    for folder in (root / "alice", elsewhere / "bob_recordings"):
        write_audio(folder / "u1.wav").with_suffix(".txt").write_text("Hello there.")
    (root / "bob").symlink_to(elsewhere / "bob_recordings")  # a speaker folder kept on another disk
    (root / "alias").symlink_to(root / "alice")  # a second link to a folder that is read anyway
    (root / "alice" / "loop").symlink_to(root)  # a loop
    (root / "alice" / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    entries, rejected = read_corpus(root)
    assert sorted((e.id, e.speaker) for e in entries) == [("alice_u1", "alice"), ("bob_u1", "bob")]
    assert sorted((r.path, r.kind) for r in rejected) == [
        (str(root / "alias"), "folder reached twice"),
        (str(root / "alice" / "gone.wav"), "broken symlink"),
        (str(root / "alice" / "loop"), "folder reached twice"),
    ]
    assert f"the same folder as {root / 'alice'}" in next(r.detail for r in rejected if r.path.endswith("alias"))


@pytest.mark.parametrize("samples, kept", [(100, False), (159, False), (160, True), (320, True)])
def test_clip_shorter_than_a_codec_frame_is_rejected(tmp_path, samples, kept):
    """code_frames rounds: 160 samples (half a frame) still make one frame of codes, 159 none."""
    path = tmp_path / "corpus" / "tiny.wav"
    path.parent.mkdir()
    sf.write(str(path), 0.3 * np.ones(samples, dtype=np.float32), 24000)
    entry = Entry("tiny", str(path), "Hi.", "spk")
    result = normalize_entries([entry], tmp_path / "audio", NormalizeOptions(min_duration=0))
    if kept:
        assert [code_frames(c.duration) for c in result.cuts] == [1] and not result.rejections
    else:
        assert not result.cuts and [r.kind for r in result.rejections] == ["too short"]
        assert "less than one codec frame (320 samples)" in result.rejections[0].detail


def test_unreadable_folder_is_reported(tmp_path, write_audio, monkeypatch):
    write_audio(tmp_path / "corpus" / "alice" / "u1.wav").with_suffix(".txt").write_text("Hello there.")
    locked = tmp_path / "corpus" / "bob"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path):  # as for a folder without read permission (root reads any, so simulate it)
        if os.path.realpath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    entries, rejected = read_corpus(tmp_path / "corpus")
    assert [e.id for e in entries] == ["alice_u1"]
    assert [(r.path, r.kind) for r in rejected] == [(str(locked), "unreadable folder")]
    assert "Permission denied" in rejected[0].detail


def test_a_shar_export_that_fails_leaves_the_old_split_folder_whole(tmp_path, monkeypatch):
    from lhotse import CutSet

    from valle.data.shar import export_shar
    from valle.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "data", num_train=6, num_dev=2)
    export_shar(data, data / "shar", shard_size=2, audio=False)
    before = {p.name: p.read_bytes() for p in (data / "shar" / "train").iterdir()}

    def fails_half_way(cuts, folder, **kw):
        (Path(folder) / "cuts.000000.jsonl.gz").write_bytes(b"half")
        raise OSError(errno.EIO, "input/output error")

    monkeypatch.setattr(CutSet, "to_shar", fails_half_way)
    with pytest.raises(OSError, match="input/output error"):
        export_shar(data, data / "shar", shard_size=3, audio=False)
    assert {p.name: p.read_bytes() for p in (data / "shar" / "train").iterdir()} == before
    assert sorted(p.name for p in (data / "shar").iterdir()) == ["dev", "text_tokenizer.json", "train"]
