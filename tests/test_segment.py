"""Long recordings -> segments: boundaries at sentence ends, the target voice kept, known text aligned, Whisper's
path (a fake model standing in), edits kept on a rerun, bad files in one line. The recording is synthetic
(tests/long_recording.py: espeak-ng voices, pauses, noise and tone gaps, an interruption) with known truth."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from long_recording import RATE, SENTENCES, VOICES, speak, write_recording, write_reference

from valle.commands.segment import main as segment_main
from valle.data.segment import audio as segment_audio
from valle.data.segment import pipeline
from valle.data.segment.cuts import CutOptions
from valle.data.segment.pipeline import SegmentOptions, segment_recordings
from valle.data.segment.review import read_tsv, write_tsv
from valle.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the test recording")
REPO = Path(__file__).resolve().parents[1]
EXACT = CutOptions(pad=0.0)  # no silence added: segment edges are the detected speech edges


def edges_within(truth, segments, tolerance):
    """Share of true sentence starts and ends that have a segment edge within `tolerance` seconds."""
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    hits = [np.abs(starts - t.start).min() <= tolerance for t in truth]
    hits += [np.abs(ends - t.end).min() <= tolerance for t in truth]
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    truth = write_recording(root / "talk.wav", 120, seed=3)
    return root, truth, write_reference(root / "ref.wav")


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """8 s of the target voice alone (2 sentences): for the runs where only the files around it matter."""
    path = tmp_path_factory.mktemp("short") / "short.wav"
    return path, write_recording(path, 8, seed=4, target_share=1.0, interrupt=False, gaps=False)


@pytest.fixture(scope="module")
def segmented(recording):
    root, truth, ref = recording
    opts = SegmentOptions(EXACT, transcribe="none", keep_speaker=ref)
    return segment_recordings([root / "talk.wav"], root / "out", opts), truth


def test_boundaries_and_lengths(segmented):
    result, truth = segmented
    o = EXACT
    assert sum(t.voice != 0 for t in truth) >= 3 and any(t.overlapped for t in truth)
    assert edges_within(truth, result.segments, 0.150) >= 0.95
    for s in result.segments:  # no segment outside min/max
        assert o.segment_min <= s.seconds <= o.segment_max, s
    for t in truth:  # no cut inside a sentence (sentences here are shorter than the max)
        for s in result.segments:
            for edge in (s.start, s.end):
                assert not t.start + 0.15 < edge < t.end - 0.15 or t.overlapped, (t, s)
    assert {s.flags for s in result.segments} <= {"no_text", "other_speaker no_text"}  # gaps are no speech


def test_target_voice_precision_recall(segmented):
    result, truth = segmented
    voice_of = {}
    for s in result.segments:
        t = min(truth, key=lambda t: abs(t.start - s.start))
        if not t.overlapped:
            voice_of[s.id] = t.voice
    kept = {s.id for s in result.segments if "other_speaker" not in s.flags}
    target = {i for i, v in voice_of.items() if v == 0}
    precision = len(kept & target) / len(kept & set(voice_of))
    recall = len(kept & target) / len(target)
    assert precision >= 0.95 and recall >= 0.90, (precision, recall)
    assert all(not math.isnan(s.speaker_score) for s in result.segments)


def test_outputs_and_rejected(segmented, recording):
    root, _, _ = recording
    result, _ = segmented
    out = root / "out"
    rows = read_tsv(out / "segments.tsv")
    assert [r.id for r in rows] == [s.id for s in result.segments]
    assert all((out / "clips" / f"{r.id}.wav").is_file() for r in rows)
    rejected = (out / "rejected.tsv").read_text().splitlines()
    assert len(rejected) == len(rows)  # nothing has text: every segment is set aside, with its reason
    assert "no_text" in rejected[0] and "talk.wav" in rejected[0]
    page = (out / "review.html").read_text()
    assert page.count("<audio") == len(rows)


def test_known_text_aligned_and_missing_sentence_reported(tmp_path):
    truth = write_recording(tmp_path / "book.wav", 40, seed=5, target_share=1.0, interrupt=False)
    text = [t.text for t in truth]
    unspoken = "This sentence was written in the book but never read aloud by anyone at all."
    (tmp_path / "book.txt").write_text(" ".join(text[:3] + [unspoken] + text[3:]) + "\n")
    result = segment_recordings([tmp_path / "book.wav"], tmp_path / "out",
                                SegmentOptions(replace(EXACT, segment_min=0.5), transcribe="none"))
    assert [s.original for s in result.segments] == text
    for s, t in zip(result.segments, truth):
        assert abs(s.start - t.start) <= 0.100 and abs(s.end - t.end) <= 0.100, (s, t)
        assert s.keep == "yes" and s.confidence == 1.0
    missing = [r for r in result.rejected if r.kind == "not in the audio"]
    assert len(missing) == 1 and "sentence 4" in missing[0].detail and "never read aloud" in missing[0].detail
    at = float(missing[0].path.rsplit(":", 1)[1])  # where: after the 3rd sentence, before the 4th
    assert truth[2].end - 0.1 <= at <= truth[3].start and f"after {at:.2f} s" in missing[0].detail
    metadata = (tmp_path / "out" / "metadata.txt").read_text().splitlines()
    assert len(metadata) == len(truth) and metadata[0].startswith("clips/book_")


class _FakeWhisper:
    """Stands in for faster_whisper.WhisperModel: finds where the audio it gets lies in the recording and returns
    the true words there (spread evenly over each sentence), with a low probability for voice 2."""

    recording: np.ndarray = None  # the whole recording at 16 kHz
    truth: list = []

    def __init__(self, model, device, compute_type):
        self.model = model

    def transcribe(self, audio, word_timestamps=False, language=None, beam_size=5):
        from scipy.signal import correlate

        offset = int(np.argmax(correlate(self.recording, audio, mode="valid", method="fft"))) / 16000
        seconds = len(audio) / 16000
        words = []
        for t in self.truth:
            if offset - 0.05 <= t.start and t.end <= offset + seconds + 0.05:
                parts = t.text.split()
                step = (t.end - t.start) / len(parts)
                for k, w in enumerate(parts):
                    words.append(types.SimpleNamespace(start=t.start - offset + k * step, word=" " + w,
                                                       end=t.start - offset + (k + 0.9) * step,
                                                       probability=0.3 if t.voice == 2 else 0.9))
        return [types.SimpleNamespace(words=words, text="")], None


def test_whisper_path_with_stand_in(tmp_path, monkeypatch):
    truth = write_recording(tmp_path / "pod.wav", 40, seed=7, interrupt=False, gaps=False)
    wave, rate = sf.read(str(tmp_path / "pod.wav"), dtype="float32")
    _FakeWhisper.recording = torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000).numpy()
    _FakeWhisper.truth = truth
    monkeypatch.setitem(sys.modules, "faster_whisper", types.SimpleNamespace(WhisperModel=_FakeWhisper))
    # a long max joins sentences across short pauses: word timings must cut them at sentence ends again
    opts = SegmentOptions(replace(EXACT, min_pause=2.0, segment_max=30.0), transcribe="whisper")
    result = segment_recordings([tmp_path / "pod.wav"], tmp_path / "out", opts)
    assert [s.text for s in result.segments] == [t.text for t in truth]
    assert edges_within(truth, result.segments, 0.150) >= 0.95
    for s, t in zip(result.segments, truth):
        assert ("low_confidence" in s.flags) == (t.voice == 2) and s.confidence == pytest.approx(
            0.3 if t.voice == 2 else 0.9)
    # with --keep-speaker, another voice is set aside without asking the ASR
    kept = segment_recordings([tmp_path / "pod.wav"], tmp_path / "out2", replace(
        opts, cut=EXACT, keep_speaker=write_reference(tmp_path / "ref.wav")))
    voices = [min(truth, key=lambda t: abs(t.start - s.start)).voice for s in kept.segments]
    assert all(bool(s.text) == (v == 0) for s, v in zip(kept.segments, voices)) and 0 in voices and 1 in voices


def test_real_whisper_model():
    """The real faster-whisper call, when a model folder is given (VALLE_WHISPER_MODEL); nothing is downloaded."""
    import os

    folder = os.environ.get("VALLE_WHISPER_MODEL")
    if not folder:
        pytest.skip("no local Whisper model: set VALLE_WHISPER_MODEL=/path/to/faster-whisper-model (no downloads)")
    pytest.importorskip("faster_whisper", reason="faster-whisper not installed (pip install 'valle-toolkit[asr]')")
    from valle.eval.asr import FasterWhisper

    words = FasterWhisper(folder, "cpu").words(torch.from_numpy(speak(SENTENCES[0], VOICES[0])), RATE, "auto")
    assert len(words) >= 5 and all(w.end >= w.start for w in words)


def test_pocketsphinx_words_and_evaluate_backend():
    pytest.importorskip("pocketsphinx")
    from valle.eval.asr import Pocketsphinx, get_transcriber

    backend, line = get_transcriber("pocketsphinx")
    assert isinstance(backend, Pocketsphinx) and "pocketsphinx" in line
    words = backend.words(torch.from_numpy(speak(SENTENCES[4], VOICES[0])), RATE, "en")
    assert len(words) >= 3 and all(0 <= w.start < w.end <= 3.5 and 0 <= w.probability <= 1 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert backend.transcribe(torch.from_numpy(speak(SENTENCES[4], VOICES[0])), RATE, "en", "x") == " ".join(
        w.text for w in words)


def test_edits_survive_a_rerun(tmp_path):
    write_recording(tmp_path / "memo.wav", 25, seed=9, interrupt=False, gaps=False)
    opts = SegmentOptions(transcribe="none")
    first = segment_recordings([tmp_path / "memo.wav"], tmp_path / "out", opts)
    rows = first.segments
    rows[0].text, rows[0].keep = "Edited by hand.", "yes"
    rows[1].keep = "no"
    write_tsv(tmp_path / "out" / "segments.tsv", rows)
    again = segment_recordings([tmp_path / "memo.wav"], tmp_path / "out", opts)
    assert [(s.id, s.text, s.keep) for s in again.segments] == [(s.id, s.text, s.keep) for s in rows]
    assert "your edits kept" in again.lines[-1]
    assert (tmp_path / "out" / "metadata.txt").read_text() == f"clips/{rows[0].id}.wav|Edited by hand.|memo\n"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "valle", "segment", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO)


def test_truncated_and_silent_files_in_one_line(tmp_path):
    sf.write(str(tmp_path / "silent.wav"), np.zeros(60 * 16000, np.float32), 16000)
    write_recording(tmp_path / "cut.wav", 20, seed=1, interrupt=False, gaps=False)
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    result = run_cli(tmp_path / "silent.wav", tmp_path / "cut.wav", "--out", tmp_path / "out", "--transcribe", "none")
    assert result.returncode == 1, result.stderr  # nothing kept
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("cut.wav: truncated: header declares") for line in lines), lines
    assert any(line.startswith("silent.wav: no speech: ") and "60.0 s" in line for line in lines), lines
    rejected = (tmp_path / "out" / "rejected.tsv").read_text()
    assert "truncated" in rejected and "no speech" in rejected


def test_bad_flags_and_edits_are_one_line(tmp_path):
    result = run_cli(tmp_path / "nothing.wav", "--out", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr
    (tmp_path / "out").mkdir()
    sf.write(str(tmp_path / "a.wav"), np.zeros(16000, np.float32), 16000)
    (tmp_path / "out" / "segments.tsv").write_text(
        "id\tfile\tstart\tend\tspeaker\tspeaker_score\tconfidence\tflags\tkeep\ttext\n"
        f"a_1\t{tmp_path / 'a.wav'}\t0\t1\ta\tnan\tnan\t\tmaybe\thello\n")
    result = run_cli(tmp_path / "a.wav", "--out", tmp_path / "out")
    assert result.returncode == 2 and "segments.tsv:2: keep is 'maybe'; write yes or no" in result.stderr


def test_num_speakers_clusters_the_voices(tmp_path):
    truth = write_recording(tmp_path / "two.wav", 45, seed=11, interrupt=False, gaps=False)
    result = segment_recordings([tmp_path / "two.wav"], tmp_path / "out",
                                SegmentOptions(EXACT, transcribe="none", num_speakers=3))
    pairs = [(min(truth, key=lambda t: abs(t.start - s.start)).voice, s.speaker) for s in result.segments]
    by_label = {}
    for voice, label in pairs:
        by_label.setdefault(label, []).append(voice)
    purity = sum(max(v.count(x) for x in set(v)) for v in by_label.values()) / len(pairs)
    assert purity >= 0.9 and all(label.startswith("two_spk") for _, label in pairs)


@pytest.mark.slow
def test_five_minutes_without_transcript_to_a_lora_voice(tmp_path):
    """The README's "I have a long recording": segment (pocketsphinx) -> edit two lines -> prepare -> LoRA for a few
    steps -> synthesis, every step a command as a user runs it (tiny model, random Encodec: offline)."""
    pytest.importorskip("pocketsphinx")
    truth = write_recording(tmp_path / "podcast.wav", 300, seed=21)
    write_reference(tmp_path / "me.wav")
    out = tmp_path / "segments"

    def run(*cmd, cwd=tmp_path):
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=1200)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    segment = [sys.executable, "-m", "valle", "segment", tmp_path / "podcast.wav", "--out", out,
               "--transcribe", "pocketsphinx", "--keep-speaker", tmp_path / "me.wav"]  # the engine's defaults
    first = run(*segment)
    rows = read_tsv(out / "segments.tsv")
    kept = [r for r in rows if r.keep == "yes"]
    assert len(rows) >= 0.9 * len(truth) and len(kept) >= 0.5 * sum(t.voice == 0 for t in truth), first.stdout
    kept[0].text = min(truth, key=lambda t: abs(t.start - kept[0].start)).text  # the scripted edit: a text fixed
    kept[1].keep = "no"  # and a line left out
    write_tsv(out / "segments.tsv", rows)
    again = run(*segment)
    assert "your edits kept" in again.stdout
    metadata = (out / "metadata.txt").read_text().splitlines()
    assert len(metadata) == len(kept) - 1 and metadata[0].endswith(f"|{kept[0].text}|podcast")

    project = tmp_path / "project"
    project.mkdir()
    init = project / "init-tiny.pt"
    run(sys.executable, "-m", "valle", "init-checkpoint", "--output", init, "--d-model", "64", "--nhead", "4",
        "--num-layers", "2", cwd=project)
    run(REPO / "egs" / "custom" / "prepare.sh", "--corpus", out / "metadata.txt", "--language", "en",
        "--codec-weights", "random", cwd=project)
    fast = ["--device", "cpu", "--num-workers", "0", "--max-steps", "3", "--valid-interval", "3", "--adapter", "lora",
            "--init-checkpoint", init]
    for half in ("ar", "nar"):
        run(REPO / "egs" / "custom" / "train.sh", "--model-name", half, *fast, cwd=project)
    run(sys.executable, "-m", "valle", "infer", "--checkpoint", init, "--adapter", "exp/ar/best-valid-loss.pt",
        "exp/nar/best-valid-loss.pt", "--text", "Hello from a long recording.", "--language", "en",
        "--prompt-audio", out / metadata[0].split("|")[0], "--prompt-text", kept[0].text, "--codec-weights", "random",
        "--max-frames", "40", "--output", "hello.wav", cwd=project)
    wave, rate = sf.read(str(project / "hello.wav"), dtype="float32")  # (T,): 320 samples per Encodec frame
    assert rate == 24000 and len(wave) % 320 == 0 and 1 <= len(wave) // 320 <= 40, (rate, len(wave))
    assert np.isfinite(wave).all() and np.abs(wave).max() > 0


def test_custom_recipe_stage_minus_one_segments_then_scans_the_kept_rows(tmp_path):
    """egs/custom/prepare.sh --long-recordings: stage -1 segments (the text is known: aligned), stage 0 scans
    the kept rows; an edit of segments.tsv is kept and scanned again on the next run."""
    (tmp_path / "rec").mkdir()
    truth = write_recording(tmp_path / "rec" / "chapter.wav", 25, seed=13, target_share=1.0, interrupt=False,
                            gaps=False)
    (tmp_path / "rec" / "chapter.txt").write_text(" ".join(t.text for t in truth) + "\n")
    prepare = [REPO / "egs" / "custom" / "prepare.sh", "--long-recordings", tmp_path / "rec", "--stop-stage", "0"]

    def run():
        proc = subprocess.run(list(map(str, prepare)), capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc

    run()
    entries = (tmp_path / "data" / "manifests" / "entries_all.jsonl").read_text().splitlines()
    assert len(entries) == len(truth) and truth[0].text in entries[0]
    rows = read_tsv(tmp_path / "data" / "segments" / "segments.tsv")
    rows[0].keep = "no"
    write_tsv(tmp_path / "data" / "segments" / "segments.tsv", rows)
    again = run()
    assert "already in segments.tsv" in again.stdout and "skipping" not in again.stdout  # scanned again
    assert len((tmp_path / "data" / "manifests" / "entries_all.jsonl").read_text().splitlines()) == len(truth) - 1


def _broken(good: Path, out: Path, where: str) -> Path:
    """`good` cut off in its header, its middle or its last block, or with garbage over part of it (Ogg: its
    length is read from its last page, so a cut-off Ogg is a valid shorter file; garbage breaks its pages)."""
    data = good.read_bytes()
    at = {"header": 30, "middle": len(data) // 2, "last": len(data) * 9 // 10}[where]
    if good.suffix == ".ogg" and where != "header":
        noise = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
        out.write_bytes(data[:at] + noise + data[at + len(noise):])
    else:
        out.write_bytes(data[:at])
    return out


def test_broken_files_are_rejected_lines_and_the_others_go_on(short, tmp_path, monkeypatch):
    """Issue 25 class 1: a decoder error at any point of any format is that file's rejected.tsv line."""
    monkeypatch.setattr(segment_audio, "BLOCK_SECONDS", 1)  # several blocks: the last one is not the first
    wave, rate = sf.read(str(short[0]), dtype="float32")
    (tmp_path / "in").mkdir()
    broken = []
    for fmt in ("wav", "flac", "mp3", "ogg"):
        good = tmp_path / f"source.{fmt}"
        sf.write(str(good), wave, rate)
        broken += [_broken(good, tmp_path / "in" / f"{where}.{fmt}", where) for where in ("header", "middle", "last")]
    sf.write(str(tmp_path / "in" / "good.flac"), wave, rate)
    sf.write(str(tmp_path / "in" / "good.mp3"), wave, rate)
    result = segment_recordings([tmp_path / "in"], tmp_path / "out", SegmentOptions(transcribe="none"))
    assert {Path(s.file).name for s in result.segments} == {"good.flac", "good.mp3"}
    assert sum(Path(s.file).name == "good.flac" for s in result.segments) == len(short[1])
    rejected = {Path(r.path).name: f"{r.kind}: {r.detail}" for r in result.rejected}
    assert sorted(rejected) == sorted(b.name for b in broken)
    assert "flac decoder lost sync" in rejected["middle.flac"] and "decoder error after" in rejected["last.flac"]
    lines = (tmp_path / "out" / "rejected.tsv").read_text().splitlines()
    for b in broken:
        assert sum(line.startswith(f"{b}\t") for line in lines) == 1, b


def test_a_run_stopped_after_one_file_keeps_it_and_a_rerun_reuses_it(short, tmp_path, monkeypatch):
    """Issue 25 class 1: outputs are written as each recording finishes; the run uses --threads (1) for torch."""
    for name in ("a.wav", "b.wav"):
        shutil.copy(short[0], tmp_path / name)
    real, seen = pipeline.segment_recording, []

    def stopped_at_the_second(recording, *args):
        seen.append(torch.get_num_threads())
        if recording.name == "b.wav":
            raise KeyboardInterrupt
        return real(recording, *args)

    monkeypatch.setattr(pipeline, "segment_recording", stopped_at_the_second)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            segment_recordings([tmp_path / "a.wav", tmp_path / "b.wav"], tmp_path / "out",
                               SegmentOptions(transcribe="none"))
        assert seen == [1, 1] and torch.get_num_threads() == 2  # the run's threads, the caller's back afterwards
    finally:
        torch.set_num_threads(before)
    rows = read_tsv(tmp_path / "out" / "segments.tsv")
    assert len(rows) == len(short[1]) and {Path(r.file).name for r in rows} == {"a.wav"}
    for r in rows:
        clip, rate = sf.read(str(tmp_path / "out" / "clips" / f"{r.id}.wav"))
        assert rate == 24000 and len(clip) == pytest.approx(r.seconds * rate, abs=2)
    monkeypatch.setattr(pipeline, "segment_recording", real)
    again = segment_recordings([tmp_path / "a.wav", tmp_path / "b.wav"], tmp_path / "out",
                               SegmentOptions(transcribe="none"))
    assert f"a.wav: {len(rows)} segments already in segments.tsv" in " ".join(again.lines)
    assert [s.id for s in again.segments[: len(rows)]] == [r.id for r in rows] and len(again.segments) == 2 * len(rows)


def test_pocketsphinx_defaults_keep_the_target_voice(tmp_path, capsys):
    """Issue 25 class 5: the documented first command with pocketsphinx (its own confidence default) keeps the
    target voice's segments and says what the filters set aside and which flag changes it."""
    pytest.importorskip("pocketsphinx")
    truth = write_recording(tmp_path / "talk.wav", 20, seed=2, interrupt=False, gaps=False)
    code = segment_main([str(tmp_path / "talk.wav"), "--out", str(tmp_path / "out"), "--transcribe", "pocketsphinx",
                         "--keep-speaker", str(write_reference(tmp_path / "ref.wav"))])
    out = capsys.readouterr().out
    rows = read_tsv(tmp_path / "out" / "segments.tsv")
    voices = {s.id: min(truth, key=lambda t: abs(t.start - s.start)).voice for s in rows}
    kept = [s.id for s in rows if s.keep == "yes"]
    assert code == 0 and all(voices[i] == 0 for i in kept), out
    assert len(kept) >= 0.75 * sum(v == 0 for v in voices.values()) >= 2, out
    others = sum(v != 0 for v in voices.values())
    assert f"set aside by other_speaker: {others} of {len(voices)}; lower --speaker-threshold (now 0.8)" in out


def test_a_run_that_keeps_nothing_names_the_filter_count_and_flag(short, tmp_path, capsys):
    code = segment_main([str(short[0]), "--out", str(tmp_path / "out"), "--transcribe", "none"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1 and f"kept: 0 of {len(short[1])} segments, 0.0 min; set aside: {len(short[1])}" in lines[2]
    assert lines[3] == (f"set aside by no_text: {len(short[1])} of {len(short[1])}; --transcribe whisper or "
                        "pocketsphinx, or give the text (--text or a same-stem .txt)")


@pytest.mark.parametrize("flags, message", [
    (["--segment-max", "inf"], "--segment-min 1.0 --segment-max inf: need 0 < min < max <= 60.0 seconds"),
    (["--segment-min", "nan"], "--segment-min nan --segment-max 15.0: need 0 < min < max <= 60.0 seconds"),
    (["--pad", "-1"], "--pad -1.0: need seconds in [0, 60.0]"),
    (["--num-speakers", "1"], "--num-speakers 1: need 0 (off) or a whole number >= 2"),
    (["--min-confidence", "2"], "--min-confidence 2.0: need a probability in [0, 1]"),
    (["--speaker-threshold", "nan"], "--speaker-threshold nan: need a cosine similarity in [-1, 1]"),
    (["--threads", "0"], "--threads 0: need a whole number >= 1"),
])
def test_options_check_themselves_for_the_command_and_the_page(flags, message, tmp_path):
    from valle.app import long_recordings
    from valle.app.workspace import Workspace

    with pytest.raises(UserError) as e:
        segment_main([str(tmp_path / "x.wav"), "--out", str(tmp_path / "out"), *flags])
    assert str(e.value) == message
    if flags[0] == "--segment-max":  # the page's field goes through the same check
        sf.write(str(tmp_path / "x.wav"), np.zeros(1600, np.float32), 16000)
        with pytest.raises(UserError, match=r"^--segment-min 1.0 --segment-max 1000000000000.0: need 0 < min"):
            long_recordings.run_segment(Workspace(tmp_path), [str(tmp_path / "x.wav")], "me", None, 0, "none", "en",
                                        1e12)
        with pytest.raises(UserError, match="--num-speakers 1.5: need a whole number"):
            long_recordings.run_segment(Workspace(tmp_path), [str(tmp_path / "x.wav")], "me", None, 1.5, "none",
                                        "en", 15)


def test_threads_option_in_help(capsys):
    with pytest.raises(SystemExit):
        segment_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads THREADS torch threads; 1 is fastest on a small machine (the figures of docs/long-recordings.md" \
        " are measured with it)" in text and "only synchronise more threads (default: 1)" in text


def test_one_transcriber_factory_with_the_callers_failure_rule(monkeypatch):
    """Segmentation needs word timings and fails on a missing engine; evaluation skips its WER column."""
    from valle.eval.asr import get_transcriber

    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "whisper", None)
    assert get_transcriber("small")[0] is None
    with pytest.raises(UserError, match="^no transcriber with word timings: no Whisper backend [(]faster-whisper "
                                        "not installed[)]; pip install 'valle-toolkit.asr.' or use pocketsphinx"):
        get_transcriber("small", words=True)
    assert pipeline.get_word_transcriber(SegmentOptions(transcribe="none")) == (
        None, "transcription: none (segments without text are flagged no_text)")
