"""Speaker similarity on espeak-ng voices, WER/CER normalisation and scoring, the ASR backend interface,
MCD with DTW, and the report's statistics."""

from __future__ import annotations

import itertools
import math
import shutil
import sys

import numpy as np
import pytest
import torch

from valle.eval import asr, distance
from valle.eval.results import corpus_rate_ci, mean_ci

SR = 24000
SENTENCES = ["The small boat drifted slowly toward the quiet harbor.",
             "Please bring the blue folder to the second meeting.",
             "He painted the old fence a bright shade of green."]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the test speech")


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    from test_eval_detectors import espeak

    tmp = tmp_path_factory.mktemp("voices")
    names = ["en-us", "en-us+f4", "en-gb-scotland+m3", "en-us+f2"]
    return {v: [espeak(s, v, tmp) for s in SENTENCES] for v in names}


@pytest.fixture(scope="module")
def encoder():
    from valle.eval.speaker import get_speaker_encoder

    return get_speaker_encoder("resemblyzer")


@needs_espeak
def test_same_voice_scores_higher_than_another_voice(voices, encoder, single_thread):
    emb = {v: [encoder.embed(w, SR) for w in waves] for v, waves in voices.items()}
    for a, b in itertools.permutations(emb, 2):
        same = [encoder.similarity(x, y) for x, y in itertools.combinations(emb[a], 2)]
        cross = [encoder.similarity(x, y) for x in emb[a] for y in emb[b]]
        assert np.mean(same) > np.mean(cross) + 0.02, (a, b, np.mean(same), np.mean(cross))
        assert 0.5 < np.mean(same) <= 1.0


def test_no_voice_gives_no_similarity(encoder):
    assert encoder.embed(torch.zeros(2 * SR), SR) is None
    assert encoder.embed(torch.randn(SR // 10), SR) is None  # 0.1 s
    assert math.isnan(encoder.similarity(None, np.ones(4)))


def test_normalisation_golden():
    assert asr.normalize_text("Dr. Smith paid $12.50 on the 3rd, didn't he?", "en") == \
        "dr smith paid twelve dollars fifty cents on the third didn't he"
    assert asr.normalize_text("  HELLO,   world!! ", "en") == "hello world"
    assert asr.normalize_text("In 1999 the well-known band...", "en") == "in nineteen ninety nine the well known band"
    assert asr.normalize_text("我有3个苹果。", "zh") == "我有三个苹果"
    assert asr.normalize_text("こんにちは、 世界！", "ja") == "こんにちは世界"
    # ja: NFKC (full-width letters and digits, half-width katakana), punctuation and every space removed
    assert asr.normalize_text("「ＡＩ」の　ｶﾀｶﾅ・コーヒー、３個。", "ja") == "aiのカタカナコーヒー3個"


def test_error_rates_on_known_pairs():
    assert asr.error_counts("The cat sat.", "the CAT sat!", "en") == (0, 3)
    assert asr.error_counts("The cat sat.", "a cat sat on", "en") == (2, 3)  # 1 substitution + 1 insertion
    assert asr.error_counts("The cat sat.", "", "en") == (3, 3)
    assert asr.error_counts("It cost 5 dollars.", "it cost five dollars", "en") == (0, 4)
    assert asr.error_counts("我有三个苹果", "我有3个梨", "zh") == (2, 6)  # 3 -> 三 matches; 苹果 -> 梨
    assert asr.error_counts("東京駅で、友達に会いました。",
                            "東京駅で友だちに会いました", "ja") == (2, 12)  # 達 -> だ + ち inserted
    # corpus-level: all errors over all reference words, not the mean of per-utterance rates
    assert asr.error_rate(["a b c d", "e f"], ["a b c d", "x"], "en") == pytest.approx(2 / 6)
    with pytest.raises(asr.UserError, match="empty after normalisation"):
        asr.error_counts("!!!", "hello", "en")


def test_transcript_file_backend(tmp_path):
    f = tmp_path / "transcripts.tsv"
    f.write_text("wavs/a/u1.wav\tThe cat sat\nwavs/a/u2.wav\t\n", encoding="utf-8")
    backend, line = asr.get_transcriber("large-v3", transcripts=str(f))
    assert backend.name == "transcript-file" and str(f) in line
    assert backend.transcribe(torch.zeros(10), SR, "en", "wavs/a/u1.wav") == "The cat sat"
    assert backend.transcribe(torch.zeros(10), SR, "en", "wavs/a/u2.wav") == ""
    with pytest.raises(asr.UserError, match="no transcript for wavs/b/u1.wav"):
        backend.transcribe(torch.zeros(10), SR, "en", "wavs/b/u1.wav")


def test_missing_asr_backend_skips_with_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "whisper", None)
    backend, line = asr.get_transcriber("large-v3")
    assert backend is None and line.startswith("intelligibility (WER/CER) skipped") and "\n" not in line
    assert asr.get_transcriber("none")[0] is None


@needs_espeak
def test_mcd_is_zero_for_itself_and_grows_with_difference(voices):
    a, b = voices["en-us"][0], voices["en-us"][1]
    same, path = distance.mcd(a, a, SR)
    assert same == pytest.approx(0.0, abs=1e-9)
    assert (path[:, 0] == path[:, 1]).all()
    slowed = torch.nn.functional.interpolate(a[None, None], scale_factor=1.2, mode="linear")[0, 0]  # 20 % longer
    near, _ = distance.mcd(a, slowed, SR)
    other, _ = distance.mcd(a, b, SR)
    noise, _ = distance.mcd(a, 0.05 * torch.randn(a.numel()), SR)
    assert 0 < near < other < noise


@needs_espeak
def test_alignment_and_optional_quality(voices):
    a = voices["en-us"][0]
    _, path = distance.mcd(a, a, SR)
    aligned = distance.align_to_reference(a, path, a.numel(), SR)
    assert aligned.shape == (a.numel(),)
    quality = distance.optional_quality(a, aligned, SR)
    if "stoi" in quality:
        assert quality["stoi"] > 0.99
    if "pesq" in quality:
        assert quality["pesq"] > 4.0


def test_confidence_intervals():
    ci = mean_ci([1.0, 2.0, 3.0, float("nan"), None])
    assert ci["mean"] == 2.0 and ci["n"] == 3
    assert ci["ci95"][0] == pytest.approx(2 - 4.302653 * 1 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) = 4.3027
    assert mean_ci([float("nan")]) is None
    rate = corpus_rate_ci([1, 0, 3], [4, 4, 4])
    assert rate["mean"] == pytest.approx(4 / 12) and rate["ci95"][0] <= rate["mean"] <= rate["ci95"][1]


def test_a_report_file_that_fails_midway_leaves_the_previous_one_whole(tmp_path):
    from valle.eval.results import TSV_COLUMNS, write_tsv

    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot format")

    path = tmp_path / "utterances.tsv"
    write_tsv([{TSV_COLUMNS[0]: "a"}], path)
    before = path.read_text()
    with pytest.raises(RuntimeError, match="cannot format"):
        write_tsv([{TSV_COLUMNS[0]: "b"}, {TSV_COLUMNS[0]: Unprintable()}], path)
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["utterances.tsv"]
