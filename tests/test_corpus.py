"""valle.data (sources, normalisation, codes, text tokens, split): every bad input is fixed and reported or
rejected with its reason; codes, text tokens and splits round-trip; the codes stage resumes; the split is
deterministic."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet

from valle.audio import SAMPLE_RATE
from valle.codec import code_frames, num_frames
from valle.data import codes, pipeline
from valle.data.files import open_cuts
from valle.data.normalize import NormalizeOptions, normalize_entries
from valle.data.sources import looks_like_speaker, read_corpus
from valle.data.split import SPLITS, random_split, split_by_parts
from valle.data.text_tokens import attach_text_tokens
from valle.errors import UserError

pytestmark = pytest.mark.usefixtures("single_thread")
OPTS = NormalizeOptions(min_duration=0.3, max_duration=3.0, silence_db=-60.0)


def _prepare(root, data_dir, opts=OPTS):
    """scan + normalize a folder corpus in-process; returns (Normalized, scan rejections)."""
    entries, scan_rejections = read_corpus(root)
    return normalize_entries(entries, data_dir / "audio", opts), scan_rejections


def _good(root, write_audio, name="spk/good.wav", text="A good sentence."):
    path = write_audio(root / name)
    path.with_suffix(".txt").write_text(text)
    return path


def _kinds(rejections):
    return {(r.path.split("/")[-1].split(":")[0], r.kind) for r in rejections}


# ------------------------------------------------------------------------------------- fixed + reported

@pytest.mark.parametrize("name,rate,channels,subtype,report", [
    ("stereo.wav", 44100, 2, "PCM_16", "2 channels at 44100 Hz (16-bit PCM WAV) -> downmixed and resampled"),
    ("eight_bit.wav", 16000, 1, "PCM_U8", "1 channel at 16000 Hz (8-bit PCM WAV) -> resampled"),
    ("float.wav", 48000, 1, "FLOAT", "1 channel at 48000 Hz (32-bit float WAV) -> resampled"),
    ("telephone.wav", 8000, 1, "PCM_16", "1 channel at 8000 Hz (16-bit PCM WAV) -> resampled"),
    ("cd.flac", 44100, 2, "PCM_16", "2 channels at 44100 Hz (16-bit PCM FLAC) -> downmixed and resampled"),
    ("lossy.mp3", 22050, 1, None, "1 channel at 22050 Hz (MP3) -> resampled"),
    ("lossy.ogg", 48000, 2, None, "2 channels at 48000 Hz (Vorbis OGG) -> downmixed and resampled"),
    ("float24k.wav", 24000, 1, "FLOAT", None),  # already mono 24 kHz: used in place, nothing to report
])
def test_format_conversions_are_kept_and_reported(tmp_path, write_audio, name, rate, channels, subtype, report):
    root = tmp_path / "corpus"
    path = write_audio(root / "spk" / name, rate=rate, channels=channels, subtype=subtype)
    path.with_suffix(".txt").write_text("Some words.")
    result, rejected = _prepare(root, tmp_path / "data")
    assert not rejected and not result.rejections
    (cut,) = result.cuts
    assert cut.recording.sampling_rate == SAMPLE_RATE and cut.recording.num_channels == 1
    audio = cut.load_audio()  # (1, T)
    assert audio.shape[0] == 1 and abs(audio.shape[1] - SAMPLE_RATE) < 0.02 * SAMPLE_RATE
    if report is None:
        assert result.conversions == [] and cut.recording.sources[0].source == str(path)
    else:
        assert result.conversions == [(str(path), report)]
        assert cut.recording.sources[0].source == str(tmp_path / "data" / "audio" / f"spk_{path.stem}.flac")


# ------------------------------------------------------------------------------------------ rejected

def _truncated(root, write_audio):
    path = write_audio(root / "spk" / "bad.wav", seconds=2.0)
    path.write_bytes(path.read_bytes()[:30000])
    return path


BAD_INPUTS = {  # name -> (make(root, write_audio), expected kind); each corpus also has one good file
    "truncated": (_truncated, "truncated"),
    "corrupted": (lambda r, w: (r / "spk" / "bad.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8), "unreadable"),
    "zero-length": (lambda r, w: (r / "spk" / "bad.wav").write_bytes(b""), "empty file"),
    "silence": (lambda r, w: w(r / "spk" / "bad.wav", silent=True), "silence"),
    "too long": (lambda r, w: w(r / "spk" / "bad.wav", seconds=4.0), "too long"),
    "too short": (lambda r, w: w(r / "spk" / "bad.wav", seconds=0.1), "too short"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_audio_is_rejected_with_its_reason(tmp_path, write_audio, case):
    make, kind = BAD_INPUTS[case]
    root = tmp_path / "corpus"
    _good(root, write_audio)
    make(root, write_audio)
    (root / "spk" / "bad.txt").write_text("A sentence for the bad file.")
    result, rejected = _prepare(root, tmp_path / "data")
    assert [c.id for c in result.cuts] == ["spk_good"]
    assert _kinds(rejected + result.rejections) == {("bad.wav", kind)}


def test_silence_threshold_is_configurable(tmp_path, write_audio):
    root = tmp_path / "corpus"
    path = root / "spk" / "quiet.wav"
    path.parent.mkdir(parents=True)
    noise = 0.001 * np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)  # about -60 dBFS
    sf.write(str(path), noise, SAMPLE_RATE, subtype="FLOAT")
    path.with_suffix(".txt").write_text("Whispered.")
    loud, _ = _prepare(root, tmp_path / "a", NormalizeOptions(silence_db=-70))
    strict, _ = _prepare(root, tmp_path / "b", NormalizeOptions(silence_db=-50))
    assert len(loud.cuts) == 1 and [r.kind for r in strict.rejections] == ["silence"]
    assert "dBFS is below --silence-db -50" in strict.rejections[0].detail


@pytest.mark.parametrize("case,kind", [
    ("missing transcript", "missing transcript"),
    ("whitespace transcript", "empty transcript"),
    ("empty transcript", "empty transcript"),
    ("latin-1 transcript", "transcript not UTF-8"),
    ("duplicate id", "duplicate utterance id"),
    ("unsupported extension", "unsupported extension"),
    ("orphan transcript", "transcript without audio"),
])
def test_bad_transcripts_and_files_are_rejected_while_reading(tmp_path, write_audio, case, kind):
    root = tmp_path / "corpus"
    _good(root, write_audio)
    bad = root / "spk" / "bad.wav"
    if case == "missing transcript":
        write_audio(bad)
    elif case == "whitespace transcript":
        write_audio(bad).with_suffix(".lab").write_text("  \n\t ")
    elif case == "empty transcript":
        write_audio(bad).with_suffix(".txt").write_text("")
    elif case == "latin-1 transcript":
        write_audio(bad).with_suffix(".txt").write_bytes("Un café crème.".encode("latin-1"))
    elif case == "duplicate id":
        write_audio(root / "spk" / "good.flac")  # same id as good.wav, shares good.txt; sorts first, so is kept
        bad = root / "spk" / "good.wav"
    elif case == "unsupported extension":
        bad = root / "spk" / "bad.m4a"
        bad.write_bytes(b"\x00\x00\x00\x20ftypM4A ")
        bad.with_suffix(".txt").write_text("An m4a file.")
    else:
        bad = root / "spk" / "lonely.txt"
        bad.write_text("No audio for this one.")
    entries, rejected = read_corpus(root)
    assert [e.id for e in entries] == ["spk_good"]
    assert [(r.path, r.kind) for r in rejected] == [(str(bad), kind)]
    if kind == "transcript not UTF-8":
        assert "byte 0xe9" in rejected[0].detail and "UTF-8" in rejected[0].detail


def test_g2p_failure_is_rejected_at_the_text_stage(tmp_path, write_audio):
    from valle.text import get_tokenizer

    root = tmp_path / "corpus"
    _good(root, write_audio)
    _good(root, write_audio, "spk/noise.wav", text="!!! ???")
    _good(root, write_audio, "spk/odd.wav", text="Mail {me} at home.")
    result, _ = _prepare(root, tmp_path / "data")
    kept, rejected, unknown = attach_text_tokens(CutSet.from_cuts(result.cuts), get_tokenizer("vallex"), "en")
    assert [c.id for c in kept] == ["spk_good", "spk_odd"]
    assert unknown == {"{": 1, "}": 1}  # kept (mapped to the unknown id) but counted for the summary
    assert [(r.path, r.kind) for r in rejected] == [(str(root / "spk" / "noise.wav"), "g2p failed")]
    assert "!!! ???" in rejected[0].detail
    sup = kept[0].supervisions[0]
    assert sup.language == "en" and sup.custom["phonemes"]
    assert len(sup.custom["text_ids"]) == len(sup.custom["text_langs"]) and set(sup.custom["text_langs"]) == {0}


def test_japanese_text_the_g2p_cannot_read_is_rejected_per_utterance(tmp_path, write_audio):
    from valle.text import get_tokenizer

    root = tmp_path / "corpus"
    _good(root, write_audio, text="東京駅で友達に会いました。")
    _good(root, write_audio, "spk/emoji.wav", text="ねこがすき😀")
    _good(root, write_audio, "spk/russian.wav", text="Привет です")
    result, _ = _prepare(root, tmp_path / "data")
    kept, rejected, _ = attach_text_tokens(CutSet.from_cuts(result.cuts), get_tokenizer("vallex"), "ja")
    assert [c.id for c in kept] == ["spk_good"]
    assert set(kept[0].supervisions[0].custom["text_langs"]) == {2}  # the model's id for ja
    assert sorted((r.path, r.kind) for r in rejected) == [(str(root / "spk" / name), "g2p failed")
                                                          for name in ("emoji.wav", "russian.wav")]
    details = {r.path.rsplit("/", 1)[-1]: r.detail for r in rejected}
    assert "'😀' (U+1F600)" in details["emoji.wav"] and "'П' (U+041F)" in details["russian.wav"]


# ------------------------------------------------------------------------------------------ metadata

def test_metadata_file_forms(tmp_path, write_audio):
    root = tmp_path / "corpus"
    write_audio(root / "clips" / "a.wav")
    write_audio(root / "clips" / "b.flac", rate=16000)
    write_audio(root / "wavs" / "LJ001-0001.wav")
    meta = root / "metadata.csv"
    meta.write_text("# comment\n"
                    "clips/a.wav|First sentence.\n"
                    "clips/b.flac|Second sentence.\n"
                    "clips/missing.wav|Nobody recorded this.\n"
                    "clips/a.wav|The same file again.\n"
                    "just one field\n"
                    "clips/c.aac|Wrong format.\n"
                    "clips/b.flac|   \n")
    entries, rejected = read_corpus(meta)
    assert [(e.id, e.text, e.speaker) for e in entries] == [
        ("clips_a", "First sentence.", "corpus"), ("clips_b", "Second sentence.", "corpus")]
    assert [(r.path, r.kind) for r in rejected] == [
        (str(root / "clips" / "missing.wav"), "missing file"),
        (f"{meta}:5", "duplicate utterance id"),
        (f"{meta}:6", "bad metadata line"),
        (f"{meta}:7", "unsupported extension"),
        (f"{meta}:8", "empty transcript"),
    ]
    assert "line 4" in rejected[0].detail
    speakers = root / "speakers.txt"
    speakers.write_text("clips/a.wav|First sentence.|alice\nclips/b.flac|Second sentence.|Bob Smith\n"
                        "clips/a.wav|No speaker given.\n")
    entries, rejected = read_corpus(speakers)
    assert [(e.text, e.speaker) for e in entries] == [("First sentence.", "alice"), ("Second sentence.", "Bob Smith")]
    assert [r.kind for r in rejected] == ["duplicate utterance id"]
    ljspeech = root / "lj.csv"
    ljspeech.write_text("LJ001-0001|Mr. Smith, 1st|Mister Smith, first\n")
    entries, rejected = read_corpus(ljspeech)
    assert [(e.id, e.text, e.speaker) for e in entries] == [("LJ001-0001", "Mister Smith, first", "corpus")]
    assert entries[0].audio == str(root / "wavs" / "LJ001-0001.wav") and not rejected


@pytest.mark.parametrize("lines, kept, ambiguous", [
    # the case: one line with a pipe in a path|text file
    (["a.wav|Plain text.", "b.wav|Text with | a pipe inside.", "c.wav|More text."], ["a", "c"], [2]),
    # the same line alone: its third field is not a speaker name
    (["b.wav|Text with | a pipe inside."], [], [1]),
    # a path|text file whose pipe line looks like path|text|speaker: still ambiguous (the file has no speakers)
    (["a.wav|Plain text.", "b.wav|This | that", "c.wav|More text."], ["a", "c"], [2]),
    # a path|text|speaker file: a pipe in the text gives 4 fields
    (["a.wav|Plain text.|spk1", "b.wav|Text | pipe.|spk1", "c.wav|More text.|spk2"], ["a", "c"], [2]),
    # LJSpeech id|text|normalized with a pipe in the text
    (["a|Plain.|Plain.", "b|A | b.|A | b.", "c|More.|More."], ["a", "c"], [2]),
])
def test_metadata_pipes_inside_the_text_are_reported_not_cut(tmp_path, write_audio, lines, kept, ambiguous):
    for name in "abc":
        write_audio(tmp_path / f"{name}.wav")
        write_audio(tmp_path / "wavs" / f"{name}.wav")
    meta = tmp_path / "list.txt"
    meta.write_text("\n".join(lines) + "\n")
    entries, rejected = read_corpus(meta)
    assert [e.id for e in entries] == kept
    assert all("|" not in e.text and e.text in lines[ord(e.id) - ord("a")] for e in entries)
    assert [(r.path, r.kind) for r in rejected] == [(f"{meta}:{n}", "ambiguous metadata line") for n in ambiguous]
    assert all("is '|' part of the text?" in r.detail for r in rejected)


def test_speaker_names():
    assert all(map(looks_like_speaker, ["spk1", "p225", "Bob Smith", "LJ", "speaker-7_a"]))
    assert not any(map(looks_like_speaker, ["", "a pipe inside.", "Hello, world", "one two three four", "x" * 65]))


def test_metadata_line_that_is_not_utf8(tmp_path, write_audio):
    write_audio(tmp_path / "a.wav")
    meta = tmp_path / "list.txt"
    meta.write_bytes(b"a.wav|Fine.\n" + "a.wav|Déjà vu.\n".encode("latin-1"))
    entries, rejected = read_corpus(meta)
    assert len(entries) == 1 and [(r.path, r.kind) for r in rejected] == [(f"{meta}:2", "transcript not UTF-8")]


def test_missing_corpus_and_nothing_usable_are_user_errors(tmp_path, write_audio):
    with pytest.raises(UserError, match="no such folder or metadata file"):
        read_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no utterances found in .*empty: expected audio files"):
        pipeline.stage_scan(tmp_path / "empty", tmp_path / "data")
    root = tmp_path / "corpus"
    write_audio(root / "spk" / "a.wav")  # no transcript
    with pytest.raises(UserError, match=r"no usable utterances .* missing transcript \(1\)"):
        pipeline.stage_scan(root, tmp_path / "data")
    (root / "spk" / "a.txt").write_text("Hello.")
    (root / "spk" / "a.wav").write_bytes(b"")
    pipeline.stage_scan(root, tmp_path / "data")
    with pytest.raises(UserError, match=r"no usable utterances .* empty file \(1\)"):
        pipeline.stage_normalize(tmp_path / "data", OPTS)


# -------------------------------------------------------------------------------------------- reports

def test_reports_and_summary(tmp_path, write_audio, capsys):
    root = tmp_path / "corpus"
    _good(root, write_audio)
    write_audio(root / "spk" / "stereo.wav", rate=44100, channels=2).with_suffix(".txt").write_text("Two channels.")
    write_audio(root / "spk" / "quiet.wav", silent=True).with_suffix(".txt").write_text("Nothing.")
    write_audio(root / "spk" / "untitled.wav")
    data = tmp_path / "data"
    pipeline.stage_scan(root, data)
    summary = pipeline.stage_normalize(data, OPTS)
    printed = capsys.readouterr().out
    lines = (data / "rejected.tsv").read_text().splitlines()
    assert lines == [f"{root}/spk/untitled.wav\tmissing transcript: no untitled.normalized.txt or untitled.txt or "
                     "untitled.lab next to it",
                     f"{root}/spk/quiet.wav\tsilence: RMS level -inf dBFS is below --silence-db -60.0"]
    assert (data / "conversions.tsv").read_text() == (
        f"{root}/spk/stereo.wav\t2 channels at 44100 Hz (16-bit PCM WAV) -> downmixed and resampled\n")
    assert summary["normalize"]["kept"] == 2 and summary["normalize"]["speakers"] == 1
    assert summary["normalize"]["conversions"] == {"downmixed from 2 channels": 1, "resampled from 44100 Hz": 1}
    assert "kept: 2 utterances" in printed and "rejected: 2" in printed and "1  silence" in printed
    assert json.loads((data / "summary.json").read_text())["scan"]["found"] == 3
    # rerunning a stage replaces its report instead of appending to it
    pipeline.stage_normalize(data, OPTS)
    assert (data / "rejected.tsv").read_text().splitlines() == lines


# ----------------------------------------------------------------------------------------- codes stage

@pytest.fixture
def normalized(tmp_path, write_audio):
    """A data dir after the normalize stage: 5 cuts of 0.4-0.8 s by 2 speakers."""
    root, data = tmp_path / "corpus", tmp_path / "data"
    for i, seconds in enumerate([0.4, 0.5, 0.6, 0.7, 0.8]):
        write_audio(root / f"spk{i % 2}" / f"u{i}.wav", seconds=seconds, rate=16000).with_suffix(".txt").write_text(
            f"Sentence number {i + 1}.")
    pipeline.stage_scan(root, data)
    pipeline.stage_normalize(data, NormalizeOptions(min_duration=0.1))
    return data


class CountingCodec:
    """Wraps a Codec, counts encoded waves (one cut per call), optionally fails after `fail_after` calls (Ctrl-C)."""

    def __init__(self, codec, fail_after=None):
        self.codec, self.fail_after, self.encoded, self.batches = codec, fail_after, 0, 0
        self.weights = codec.weights
        self.max_batch_seconds = codec.max_batch_seconds

    def encode(self, waves):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.encoded += len(waves)
        return self.codec.encode(waves)


def test_codes_round_trip(normalized, random_codec):
    pipeline.stage_codes(normalized, random_codec)
    cuts = open_cuts(normalized / "tokenized" / "cuts_all_codes.jsonl.gz")
    assert len(cuts) == 5
    for cut in cuts:
        codes = cut.load_codes()
        assert codes.dtype == np.int16 and codes.shape == (code_frames(cut.duration), 8) == tuple(cut.codes.shape)
        expected = random_codec.encode([torch.from_numpy(cut.load_audio()[0])])[0]  # (ceil(T / 320), 8)
        assert np.array_equal(codes, expected[: len(codes)].numpy())
        assert cut.codes.frame_shift == pytest.approx(1 / 75)


@pytest.mark.parametrize("samples", [320, 24000, 24159, 24160, 24161, 24319, 59013])
def test_stored_frames_are_what_lhotse_reads(samples):
    """round(duration x 75): one less than Encodec's ceil(samples / 320) only when the last frame is under half full."""
    frames = code_frames(samples / SAMPLE_RATE)
    partial = samples % 320
    assert frames == num_frames(samples) - (1 if 0 < partial < 160 else 0)


def test_codes_stage_resumes_after_an_interruption(normalized, random_codec):
    h5 = normalized / "tokenized" / "codes_all.h5"
    with pytest.raises(KeyboardInterrupt):
        pipeline.stage_codes(normalized, CountingCodec(random_codec, fail_after=2))
    assert not h5.exists() and len(codes._stored_codes(h5, "random")) >= 2  # Ctrl-C wrote what it had as a piece
    first_two = len(codes._stored_codes(h5, "random"))
    resumed = CountingCodec(random_codec)
    pipeline.stage_codes(normalized, resumed)
    assert resumed.encoded == 5 - first_two and len(codes._stored_codes(h5, "random")) == 5
    assert not codes._pieces_dir(h5).exists()  # merged into the store
    again = CountingCodec(random_codec)
    pipeline.stage_codes(normalized, again)
    assert again.encoded == 0  # everything stored: nothing to encode
    (normalized / "audio" / "spk1_u1.flac").touch()  # the audio changed since its codes were made
    changed = CountingCodec(random_codec)
    pipeline.stage_codes(normalized, changed)
    assert changed.encoded == 1
    cuts = open_cuts(normalized / "tokenized" / "cuts_all_codes.jsonl.gz")
    assert all(c.load_codes().shape[1] == 8 for c in cuts)


def test_unreadable_h5_or_other_weights_are_moved_aside(normalized, random_codec):
    h5 = normalized / "tokenized" / "codes_all.h5"
    h5.parent.mkdir(parents=True)
    h5.write_bytes(b"not hdf5")
    pipeline.stage_codes(normalized, random_codec)
    assert h5.with_suffix(".old.h5").read_bytes() == b"not hdf5" and len(codes._stored_codes(h5, "random")) == 5
    other = CountingCodec(random_codec)
    other.weights = "/somewhere/encodec_24khz-d7cc33bc.th"
    pipeline.stage_codes(normalized, other)
    assert other.encoded == 5  # codes of the random weights are not reused for other weights


# ------------------------------------------------------------------------------------- text + split

def test_text_and_split_stages(normalized, random_codec, capsys):
    from valle.text import get_tokenizer, load_tokenizer_info

    pipeline.stage_codes(normalized, random_codec)
    pipeline.stage_text(normalized, get_tokenizer("vallex"), "en")
    assert load_tokenizer_info(normalized / "tokenized")["name"] == "vallex"
    summary = pipeline.stage_split(normalized, dev_ratio=0.2, test_ratio=0.2, seed=1)
    assert {k: v["cuts"] for k, v in summary["split"].items()} == {"train": 3, "dev": 1, "test": 1}
    ids = set()
    for split in SPLITS:
        for cut in open_cuts(normalized / "tokenized" / f"cuts_{split}.jsonl.gz"):
            ids.add(cut.id)
            sup = cut.supervisions[0]
            assert cut.load_codes().shape[1] == 8 and sup.custom["text_ids"] and sup.custom["phonemes"]
    assert len(ids) == 5
    assert "split: train 3 cuts" in capsys.readouterr().out


def test_text_stage_builds_the_espeak_table_from_the_corpus(normalized, random_codec):
    from valle.text import get_tokenizer, load_tokenizer_info

    pipeline.stage_codes(normalized, random_codec)
    summary = pipeline.stage_text(normalized, get_tokenizer("espeak"), "en")
    assert summary["text"]["kept"] == 5 and summary["text"]["unknown_symbols"] == {}
    table = (normalized / "tokenized" / "unique_text_tokens.k2symbols").read_text().splitlines()
    vocab = load_tokenizer_info(normalized / "tokenized")["vocab"]
    assert table[0] == "<eps> 0" and len(table) + 3 == len(vocab)  # + <pad> <bos> <eos>
    for cut in open_cuts(normalized / "tokenized" / "cuts_all_text.jsonl.gz"):
        assert max(cut.supervisions[0].custom["text_ids"]) < len(vocab)


def _cuts(n, speakers=2):
    from lhotse import MonoCut, SupervisionSegment

    return CutSet.from_cuts(
        MonoCut(id=f"c{i:03d}", start=0, duration=1.0, channel=0,
                supervisions=[SupervisionSegment(id=f"c{i:03d}", recording_id="r", start=0, duration=1.0,
                                                 speaker=f"s{i % speakers}")])
        for i in range(n))


def _ids(splits):
    return {k: sorted(c.id for c in v) for k, v in splits.items()}


def test_split_is_deterministic_and_order_independent():
    cuts = _cuts(40)
    a = _ids(random_split(cuts, 0.1, 0.1, seed=42))
    b = _ids(random_split(CutSet.from_cuts(reversed(list(cuts))), 0.1, 0.1, seed=42))
    c = _ids(random_split(cuts, 0.1, 0.1, seed=7))
    assert a == b and a != c
    assert [len(a[s]) for s in ("train", "dev", "test")] == [32, 4, 4]
    assert not set(a["train"]) & set(a["dev"]) and not set(a["dev"]) & set(a["test"])


@pytest.mark.parametrize("n,sizes", [(2, (1, 1, 0)), (3, (1, 1, 1)), (5, (3, 1, 1))])
def test_tiny_corpus_still_gets_a_dev_set(n, sizes):
    splits = random_split(_cuts(n), 0.05, 0.05, seed=0)
    assert tuple(len(splits[s]) for s in ("train", "dev", "test")) == sizes


def test_heldout_speakers_go_to_test():
    splits = random_split(_cuts(30, speakers=3), 0.1, 0.0, seed=0, heldout_speakers=["s2"])
    assert {c.supervisions[0].speaker for c in splits["test"]} == {"s2"} and len(splits["test"]) == 10
    assert all(c.supervisions[0].speaker != "s2" for s in ("train", "dev") for c in splits[s])
    with pytest.raises(UserError, match="not in the corpus"):
        random_split(_cuts(10), 0.1, 0.1, seed=0, heldout_speakers=["bob"])
    with pytest.raises(UserError, match="sum to below 1"):
        random_split(_cuts(10), 0.6, 0.5, seed=0)


def test_split_by_parts_maps_libritts_parts():
    parts = {"train-clean-100": _cuts(10), "dev-clean": _cuts(3), "test-clean": _cuts(2)}
    splits = split_by_parts(parts, 0.1, 0.1, seed=0)
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [10, 3, 2]
    carved = split_by_parts({"train-clean-100": _cuts(20)}, 0.1, 0.1, seed=0)
    assert [len(carved[s]) for s in ("train", "dev", "test")] == [16, 2, 2]
    with pytest.raises(UserError, match="dev set is empty"):
        split_by_parts({"all": _cuts(1)}, 0.1, 0.1, seed=0)


# ------------------------------------------------------------------------------------------ LibriTTS

def test_libritts_layout_through_every_stage(tmp_path, fake_libritts, random_codec):
    """A fake LibriTTS folder goes through the LibriTTS scan and the shared stages (offline)."""
    from valle.text import get_tokenizer

    root = fake_libritts(tmp_path / "LibriTTS", {"train-clean-5": "19", "dev-clean": "84", "test-clean": "121"})
    data = tmp_path / "data"
    parts = ["train-clean-5", "dev-clean", "test-clean"]
    entries = pipeline.stage_scan_libritts(root, parts, data)
    assert {(e.part, e.speaker) for e in entries} == {("train-clean-5", "19"), ("dev-clean", "84"),
                                                      ("test-clean", "121")}
    assert (data / "rejected.tsv").read_text() == ""  # the chapters' .trans.tsv and .book.tsv belong to them
    pipeline.stage_normalize(data, NormalizeOptions())
    pipeline.stage_codes(data, random_codec)
    pipeline.stage_text(data, get_tokenizer("vallex"), "en")
    pipeline.stage_split(data, 0.05, 0.05, seed=42)
    speakers = {s: {c.supervisions[0].speaker for c in open_cuts(data / "tokenized" / f"cuts_{s}.jsonl.gz")}
                for s in SPLITS}
    assert speakers == {"train": {"19"}, "dev": {"84"}, "test": {"121"}}
    # LibriTTS files are mono 24 kHz already: referenced in place, nothing converted
    assert (data / "conversions.tsv").read_text() == "" and not any((data / "audio").iterdir())


def test_every_file_of_a_libritts_tree_is_accounted_for(tmp_path, fake_libritts):
    """An empty wav, a corrupt wav, a wav without its transcript and a transcript without its wav: each one line
    of rejected.tsv (stage 0 or 1) while the good files go on; lhotse's reader stopped at the first broken wav."""
    from valle.commands import prepare_corpus

    root = fake_libritts(tmp_path / "download" / "LibriTTS", {"dev-clean": "84", "train-clean-5": "19"})
    chapter = root / "train-clean-5" / "19" / "1000"
    good = sorted(chapter.glob("*.wav"))
    (chapter / "19_1000_000002_000000.wav").write_bytes(b"")
    (chapter / "19_1000_000002_000000.normalized.txt").write_text("Empty.")
    (chapter / "19_1000_000003_000000.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    (chapter / "19_1000_000003_000000.normalized.txt").write_text("Corrupt.")
    good[0].with_suffix(".normalized.txt").unlink()
    (chapter / "19_1000_000004_000000.normalized.txt").write_text("No audio.")
    data = tmp_path / "data"
    prepare_corpus.main(["libritts", "--corpus-dir", str(root), "--parts", "dev-clean", "train-clean-5",
                         "--data-dir", str(data)])
    prepare_corpus.main(["normalize", "--data-dir", str(data)])
    rejected = dict(line.split("\t") for line in (data / "rejected.tsv").read_text().splitlines())
    assert {Path(p).name: reason.split(":")[0] for p, reason in rejected.items()} == {
        good[0].name: "missing transcript", "19_1000_000004_000000.normalized.txt": "transcript without audio",
        "19_1000_000002_000000.wav": "empty file", "19_1000_000003_000000.wav": "unreadable"}
    kept = {c.id for part in ("dev-clean", "train-clean-5")
            for c in open_cuts(data / "manifests" / f"cuts_{part}.jsonl.gz")}
    assert kept == {p.stem for p in (root / "dev-clean").rglob("*.wav")} | {good[1].stem}
