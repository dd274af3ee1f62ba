"""The data check (valle.data.check, the check stage of prepare.sh): each flag on a file damaged to trigger it and
never on the clean files, the transcript check, the verdict lines (the three bad-input messages too),
--drop-flagged and its undoing, --loudness-normalize, and the command."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from valle.data import check
from valle.data.check import Utterance, stage_check, verdict
from valle.data.normalize import NormalizeOptions, normalize_entry
from valle.data.pipeline import stage_normalize, stage_scan
from valle.data.sources import Entry
from valle.errors import UserError
from valle.eval.asr import TranscriptFile

sys.path.insert(0, str(Path(__file__).parent))
from check_corpus import REASONS, make_corpus  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the test corpus")
DAMAGES = {"clipping": 1, "noise": 1, "silence": 1, "voice": 1, "duplicate": 1, "quiet": 1, "rate": 1, "transcript": 1}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """A normalized corpus of 2 x 7 espeak-ng files, 8 of them damaged, and its check: (data dir, truth, Check)."""
    root = tmp_path_factory.mktemp("check")
    truth = make_corpus(root / "corpus", 7, DAMAGES)
    data = root / "data"
    stage_scan(root / "corpus", data)
    stage_normalize(data, NormalizeOptions())
    return data, truth, stage_check(data, "en")


def test_each_damage_is_flagged_with_its_value_and_clean_files_are_not(checked):
    data, truth, result = checked
    flags = {Path(u.path): u.flags for u in result.utterances}
    assert set(flags) == set(truth)
    for path, how in truth.items():
        if how:
            assert any(f.startswith(REASONS[how]) for f in flags[path]), (how, flags[path])
        else:
            assert flags[path] == [], (path, flags[path])
    text = {how: "; ".join(flags[p]) for p, how in truth.items() if how}
    assert "% of samples at full scale" in text["clipping"] and " dB (under 15 dB)" in text["noise"]
    assert " s after (over 1 s)" in text["silence"] and "LU from the corpus median" in text["quiet"]
    assert "phones/s" in text["rate"] and "similarity 0." in text["voice"] and "same as" in text["duplicate"]
    report = json.loads((data / "check.json").read_text())
    assert report["verdict"] == result.verdict and report["thresholds"]["MIN_SNR_DB"] == check.MIN_SNR_DB
    assert set(report["speakers"]) == {"anna", "bert"} and report["speakers"]["anna"]["files"] >= 7
    assert "Flagged files (8 of 15)" in (data / "check.html").read_text()


def test_transcripts_against_an_asr(checked):
    _, truth, result = checked
    utts = [Utterance(**{**u.row(), "flags": []}) for u in result.utterances]
    wrong = utts[0]
    hypotheses = {u.id: u.text for u in utts} | {wrong.id: "something else was said here"}
    listing = checked[0] / "heard.tsv"
    listing.write_text("".join(f"{k}\t{v}\n" for k, v in hypotheses.items()))
    asr = check.AsrCheck(TranscriptFile(listing), "en")
    for u in utts:
        asr.measure(u, None)  # a transcript file needs no audio
    assert asr.flag(utts) == "transcripts: median WER 0.00 against transcript-file"
    assert wrong.flags == [f"transcript: ASR heard 'something else was said here', WER {wrong.wer:.2f} (over 0.6)"]
    assert all(u.flags == [] for u in utts[1:])

    listing.write_text("".join(f"{k}\tnothing like it\n" for k in hypotheses))  # an ASR that cannot read the voice
    utts = [Utterance(**{**u.row(), "flags": []}) for u in result.utterances]
    asr = check.AsrCheck(TranscriptFile(listing), "en")
    for u in utts:
        asr.measure(u, None)
    assert asr.flag(utts).startswith("transcripts not judged: transcript-file gets most files wrong here "
                                     "(median WER 1.00")
    assert all(u.flags == [] for u in utts)


def test_transcripts_aligned_to_the_audio(checked):
    """English without Whisper: the wrong transcript fits its audio far worse than the rest (or not at all), the
    clean files do not; words outside pocketsphinx's dictionary leave a file unchecked, named in the line."""
    _, truth, result = checked
    by_path = {Path(u.path): u for u in result.utterances}
    wrong = next(by_path[p] for p, how in truth.items() if how == "transcript")
    clean = [by_path[p] for p, how in truth.items() if not how]
    assert wrong.align_cost > check.MAX_ALIGN_COST_RATIO * max(u.align_cost for u in clean)
    assert any(f.startswith("transcript: ") for f in wrong.flags)
    assert any(n.startswith("transcripts: aligned to the audio by pocketsphinx alignment (15 of 15 files)")
               for n in result.notes), result.notes

    aligner = check.AlignmentCheck(_FakeAligner())
    utts = [_utt(n, speaker="solo") for n in range(6)]
    for u, cost in zip(utts, (0.004, 0.0042, 0.0038, 0.0041, 0.0079, float("inf"))):
        u.text = "fine words"
        aligner.aligner.next_cost = cost
        aligner.measure(u, None)
    unknown = _utt(9, speaker="solo")
    unknown.text = "the zorblax said"
    aligner.measure(unknown, None)
    line = aligner.flag(utts + [unknown])
    assert [bool(u.flags) for u in utts] == [False, False, False, False, True, True]
    assert utts[4].flags == ["transcript: fits the audio 1.90x worse than its speaker's files do (alignment cost, "
                             "over 1.5x the median)"]
    assert utts[5].flags == ["transcript: its words cannot be aligned to the audio at all"]
    assert unknown.align_cost is None and unknown.flags == [] and unknown.row()["align_cost"] is None
    assert line == ("transcripts: aligned to the audio by fake (6 of 7 files); 1 not checked, words outside its "
                    "dictionary: zorblax (their align_cost is null in check.json)")


class _FakeAligner:
    name = "fake"
    next_cost = 0.0

    def unknown_words(self, text):
        return [w for w in text.split() if w == "zorblax"]

    def word_costs(self, wave, sample_rate, text):
        return None if self.next_cost == float("inf") else [self.next_cost] * 4


def test_transcript_check_per_language_and_engine():
    assert check._transcript_check("none", "en") == (None, "transcripts not checked: --check-asr none")
    assert isinstance(check._transcript_check("auto", "en")[0], check.AlignmentCheck)
    assert check._transcript_check("auto", "zh")[1].startswith("transcripts not checked: pocketsphinx aligns English "
                                                               "only, not 'zh'")


def _utt(n: int, speaker: str = "me", seconds: float = 6.0, flags: tuple[str, ...] = ()) -> Utterance:
    return Utterance(f"{speaker}{n}", f"{speaker}/{n}.wav", speaker, "text", seconds, 0.0, 40.0, -20.0, 0.1, 0.1, 60,
                     flags=list(flags))


def _verdict(utts: list[Utterance]) -> str:
    return verdict(utts, check.speaker_summary(utts), Path("data/check.html"))


def test_verdict_lines():
    assert _verdict([_utt(i) for i in range(245)]) == \
        "24.5 min of speech from 1 speaker: LoRA recommended; see data/check.html"
    many = [_utt(i, s, 20.0) for s in ("a", "b") for i in range(200)] + [_utt(999, "a", 5.0, ("clipping: 9 %",))]
    assert _verdict(many) == ("133.3 min of speech from 2 speakers, 1 of 401 files flagged: full fine-tuning "
                              "recommended; see data/check.html")


def test_bad_input_lines():
    assert _verdict([_utt(i, seconds=2.0) for i in range(20)]) == \
        ("only 0.7 min of usable speech: at least 1 min is needed (10 or more recommended); add recordings; "
         "see data/check.html")
    noisy = [_utt(i, flags=("low signal-to-noise: about 9.0 dB",)) for i in range(9)] + \
        [_utt(9, flags=("clipping: 2 %", "long silence: 3 s"))]
    assert _verdict(noisy) == ("all 10 files are flagged (low signal-to-noise (9), clipping (1), long silence (1)): "
                               "nothing usable to fine-tune on; record cleaner audio or fix the transcripts; "
                               "see data/check.html")
    hidden = [_utt(i) for i in range(30)] + [_utt(30 + i, flags=("another voice: similarity 0.6",)) for i in range(4)]
    assert _verdict(hidden) == ("speaker me: 4 of 34 files sound like another voice: give each voice its own "
                                "speaker (a folder each) or remove those files; see data/check.html")


def test_drop_flagged_moves_them_to_rejected_and_back(checked, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(checked[0], data)
    cuts = data / "manifests" / "cuts_all.jsonl.gz"
    before = cuts.read_bytes()
    result = stage_check(data, "en", drop_flagged=True)
    rejected = (data / "rejected.tsv").read_text().splitlines()
    assert len(rejected) == 8 and all("\tflagged by the check: " in line for line in rejected)
    clipped = next(u for u in result.flagged() if u.flags[0].startswith("clipping"))
    assert f"{clipped.path}\tflagged by the check: {'; '.join(clipped.flags)}" in rejected
    from valle.data.files import load_cuts

    assert len(load_cuts(cuts)) == 7 and (data / "summary.json").read_text().count('"dropped": 8')
    again = stage_check(data, "en")  # without --drop-flagged: every file is back, nothing rejected
    assert len(again.utterances) == 15 and (data / "rejected.tsv").read_text() == ""
    assert sorted(c.id for c in load_cuts(cuts)) == sorted(u.id for u in result.utterances)
    assert len(before) > 0 and not list((data / "manifests").glob("flagged_*"))


def test_loudness_normalize_brings_a_file_to_the_target(checked, tmp_path):
    data, truth, _ = checked
    quiet = next(p for p, how in truth.items() if how == "quiet")
    entry = Entry(id="q", audio=str(quiet), text="x", speaker="anna")
    cut, rejection, _ = normalize_entry(entry, tmp_path, NormalizeOptions(loudness_normalize=True))
    assert rejection is None and Path(cut.recording.sources[0].source) == tmp_path / "q.flac"
    lufs = check.loudness_lufs(cut.load_audio()[0])
    assert abs(lufs - check.TARGET_LUFS) < 0.5
    assert cut.supervisions[0].custom["loudness"].endswith(f"-> {lufs:.1f} LUFS")


def test_command_prints_the_verdict(checked, tmp_path, capsys):
    from valle.commands import check_data

    check_data.main(["--data-dir", str(checked[0]), "--verdict"])
    assert capsys.readouterr().out.strip() == checked[2].verdict
    with pytest.raises(UserError, match="check.json: run the check stage first"):
        check_data.main(["--data-dir", str(tmp_path), "--verdict"])


def test_clean_measures_of_a_tone():
    tone = (0.5 * np.sin(np.arange(24000) * 2 * np.pi * 220 / 24000)).astype(np.float32)  # (24000,) 1 s
    u = check.measure("t", "t.wav", "s", "hello", np.concatenate([np.zeros(48000, np.float32), tone]), 4)
    assert u.lead_s == pytest.approx(2.0, abs=0.03) and u.trail_s == 0 and u.clipped_percent == 0
    assert u.phones_per_second == pytest.approx(4.0, rel=0.03)


def test_duplicates_within_a_speaker_and_of_the_audio():
    utts = [_utt(1, "a"), _utt(2, "b"), _utt(3, "a"), _utt(4, "b")]  # all read "text"
    for n, u in enumerate(utts[:3]):
        u.profile = np.random.default_rng(n).normal(size=50)  # (frames,)
    utts[3].profile = utts[0].profile.copy()
    check.flag_duplicates(utts)
    assert utts[0].flags == utts[1].flags == []  # two speakers reading one sentence: no duplicate
    assert utts[2].flags == ["duplicate text: same as a1"]
    assert utts[3].flags == ["duplicate text: same as b2",
                             "duplicate audio: same as a1 (loudness profile correlation over 0.995)"]
