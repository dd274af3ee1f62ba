"""The data check: every normalized utterance measured, flagged with the measured value where it looks wrong,
minutes of usable speech per speaker, and one verdict line (DATA/check.json, DATA/check.html).

Flags (the thresholds below are the only place of each; docs/data.md "Checking the data" explains them):
clipping, low signal-to-noise (estimated from the 20 ms frame energies: loud frames against the quiet ones),
loudness far from the corpus median (ITU-R BS.1770 integrated loudness, pyloudnorm), long leading/trailing
silence, speaking rate (espeak-ng phones per second of speech) far from the corpus median, a transcript that does
not fit its audio (English: forced alignment with pocketsphinx, its cost against the speaker's median; with a
Whisper model: WER), a voice unlike the rest of its speaker's files
(resemblyzer embedding against the speaker's centroid), and duplicate audio or text.
Flagged files are listed, not removed; `--drop-flagged` moves them to rejected.tsv (`apply_drop`).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import html
import json
import math
import re
import statistics
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from valle.audio import SAMPLE_RATE

# --- thresholds: a file is flagged when ... -----------------------------------------------------------------
CLIP_LEVEL = 0.99  # |sample| at or above this is at full scale
MAX_CLIPPED_PERCENT = 0.1  # ... more than this % of its samples are at full scale
MIN_SNR_DB = 15.0  # ... its estimated signal-to-noise ratio is below this
MAX_LOUDNESS_OFFSET_LU = 10.0  # ... its loudness is this far (LU) from the corpus median
MAX_EDGE_SILENCE_S = 1.0  # ... it starts or ends with a silence longer than this
MAX_RATE_RATIO = 1.6  # ... its phones per second are above this many times the corpus median, or below 1/this
MAX_WER = 0.6  # ... the offline ASR's transcript differs from its text by more than this word error rate
MAX_ALIGN_COST_RATIO = 1.5  # ... (English, no Whisper) its worse-fitting words (the 75th percentile of their
ALIGN_MIN_FILES = 5  # alignment costs) fit this many times worse than the median of its speaker's files (of the
# corpus when the speaker has fewer than ALIGN_MIN_FILES checked)
VOICE_MARGIN = 0.1  # ... its voice's similarity to its speaker's centroid is this far below the speaker's median
DUPLICATE_PROFILE_CORRELATION = 0.995  # ... its loudness profile matches an earlier file of the same length
# --- the corpus as a whole -----------------------------------------------------------------------------------
MIN_MINUTES = 1.0  # less usable speech than this: too little to fine-tune on
HIDDEN_VOICE_SHARE = 0.1  # a speaker whose files are this often "another voice" (and at least ...
HIDDEN_VOICE_MIN_FILES = 3  # ... this many) hides a second speaker
# --- how the measures are made -------------------------------------------------------------------------------
FRAME = 480  # 20 ms frames at 24 kHz
SPEECH_BELOW_PEAK_DB = 40.0  # frames within this of the loudest frame are speech (the edges' silence is the rest)
TARGET_LUFS = -20.0  # --loudness-normalize brings every file to this (peaks kept below CLIP_LEVEL)
REPORT_JSON, REPORT_HTML = "check.json", "check.html"
_PUNCTUATION = re.compile(r"[^\w\s]|_")  # what two texts may differ in and still be the same text
DAMAGED = ("clipping", "low signal-to-noise")  # flags whose files the voice check leaves out
CHUNK = 32  # files read (and embedded in one batch) at a time


@dataclass
class Utterance:
    """One cut's measures, and its flags (`reason: value`)."""

    id: str
    path: str  # the original file (the supervision's source)
    speaker: str
    text: str
    duration: float  # seconds
    clipped_percent: float
    snr_db: float
    lufs: float
    lead_s: float
    trail_s: float
    phones: int
    wer: float | None = None
    align_cost: float | None = None  # its words' alignment costs per frame (word_costs), 75th percentile
    voice_similarity: float | None = None
    flags: list[str] = field(default_factory=list)
    profile: np.ndarray | None = None  # (frames,) dB: duplicate search only, not reported
    embedding: np.ndarray | None = None  # (D,): voice check only, not reported

    @property
    def speech_s(self) -> float:
        return max(self.duration - self.lead_s - self.trail_s, FRAME / SAMPLE_RATE)

    @property
    def phones_per_second(self) -> float:
        return self.phones / self.speech_s

    def row(self) -> dict:
        """The reported values; a measure that is not finite (the loudness of silence, a transcript that cannot
        be aligned) is null, its flag says what it means."""
        values = {k: v for k, v in vars(self).items() if k not in ("profile", "embedding")}
        return {k: (round(v, 3) if math.isfinite(v) else None) if isinstance(v, float) else v
                for k, v in values.items()}


@functools.cache
def _meter():
    import pyloudnorm

    return pyloudnorm.Meter(SAMPLE_RATE)  # its K-weighting filters are designed once


def loudness_lufs(wave: np.ndarray) -> float:
    """ITU-R BS.1770 integrated loudness of a mono 24 kHz waveform (T,) in LUFS (-inf for silence)."""
    return float(_meter().integrated_loudness(wave.astype(np.float64)))


def to_loudness(wave: np.ndarray, target: float = TARGET_LUFS) -> tuple[np.ndarray, float]:
    """(wave brought to `target` LUFS, its loudness before); the gain is lowered where the peaks would clip."""
    before = loudness_lufs(wave)
    if not math.isfinite(before):
        return wave, before
    peak = float(np.abs(wave).max())
    gain = min(10 ** ((target - before) / 20), CLIP_LEVEL / peak)
    return (wave * gain).astype(np.float32), before


def frame_db(wave: np.ndarray) -> np.ndarray:
    """Energy of each 20 ms frame in dB (T,) -> (T // FRAME,); digital silence is -100 dB."""
    frames = wave[: len(wave) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)  # (F, FRAME)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10)


def measure(cut_id: str, path: str, speaker: str, text: str, wave: np.ndarray, phones: int) -> Utterance:
    """The signal measures of one utterance (T,) at 24 kHz."""
    db = frame_db(wave)
    speech = np.flatnonzero(db > db.max() - SPEECH_BELOW_PEAK_DB)  # indices of speech frames
    seconds = FRAME / SAMPLE_RATE
    return Utterance(
        id=cut_id, path=path, speaker=speaker, text=text, duration=len(wave) / SAMPLE_RATE,
        clipped_percent=100 * float(np.mean(np.abs(wave) >= CLIP_LEVEL)),
        snr_db=float(np.percentile(db, 95) - np.percentile(db, 10)),
        lufs=loudness_lufs(wave), lead_s=speech[0] * seconds, trail_s=(len(db) - 1 - speech[-1]) * seconds,
        phones=phones, profile=db)


def count_phones(text: str, language: str) -> int:
    """Phones of a transcript as espeak-ng says it (punctuation and word boundaries not counted)."""
    from valle.text.espeak import WORD, phonemize

    return sum(1 for p in phonemize(text, language)[0] if p != WORD and any(c.isalnum() for c in p))


# --- flags -----------------------------------------------------------------------------------------------------

def flag_signal(utts: list[Utterance]) -> None:
    """Clipping, noise, loudness against the corpus, edge silence, speaking rate against the corpus."""
    median_lufs = statistics.median(u.lufs for u in utts if math.isfinite(u.lufs))
    median_rate = statistics.median(u.phones_per_second for u in utts)
    for u in utts:
        if u.clipped_percent > MAX_CLIPPED_PERCENT:
            u.flags.append(f"clipping: {u.clipped_percent:.2f} % of samples at full scale (over "
                           f"{MAX_CLIPPED_PERCENT} %)")
        if u.snr_db < MIN_SNR_DB:
            u.flags.append(f"low signal-to-noise: about {u.snr_db:.1f} dB (under {MIN_SNR_DB:g} dB)")
        if abs(u.lufs - median_lufs) > MAX_LOUDNESS_OFFSET_LU:
            u.flags.append(f"loudness: {u.lufs:.1f} LUFS, {u.lufs - median_lufs:+.1f} LU from the corpus median "
                           f"{median_lufs:.1f} (more than {MAX_LOUDNESS_OFFSET_LU:g})")
        edge = max(u.lead_s, u.trail_s)
        if edge > MAX_EDGE_SILENCE_S:
            u.flags.append(f"long silence: {u.lead_s:.1f} s before the speech, {u.trail_s:.1f} s after (over "
                           f"{MAX_EDGE_SILENCE_S:g} s)")
        ratio = u.phones_per_second / median_rate
        if not 1 / MAX_RATE_RATIO <= ratio <= MAX_RATE_RATIO:
            u.flags.append(f"speaking rate: {u.phones_per_second:.1f} phones/s, {ratio:.2f}x the corpus median "
                           f"{median_rate:.1f} (outside 1/{MAX_RATE_RATIO:g}..{MAX_RATE_RATIO:g}x)")


class AlignmentCheck:
    """The transcripts of English files against their audio by forced alignment (pocketsphinx): a file whose
    words fit its audio far worse than its speaker's files do (or not at all) is flagged."""

    def __init__(self, aligner):
        self.aligner = aligner
        self.unknown: dict[str, list[str]] = {}  # file -> the words the aligner's dictionary lacks (not checked)

    def measure(self, u: Utterance, wave: np.ndarray) -> None:
        unknown = self.aligner.unknown_words(u.text)
        if unknown:
            self.unknown[u.path] = unknown
            return
        costs = self.aligner.word_costs(wave, SAMPLE_RATE, u.text)
        u.align_cost = math.inf if not costs else float(np.percentile(costs, 75))  # its worse-fitting words

    def flag(self, utts: list[Utterance]) -> str:
        checked = [u for u in utts if u.align_cost is not None]
        by_speaker = collections.defaultdict(list)
        for u in checked:
            by_speaker[u.speaker].append(u.align_cost)
        corpus = (statistics.median(u.align_cost for u in checked), "the corpus") if checked else None
        reference = {speaker: (statistics.median(costs), "its speaker's files") if len(costs) >= ALIGN_MIN_FILES
                     else corpus for speaker, costs in by_speaker.items()}  # too few files: the corpus's median
        for u in checked:
            median, whose = reference[u.speaker]
            if not math.isfinite(u.align_cost):
                u.flags.append("transcript: its words cannot be aligned to the audio at all")
            elif u.align_cost > MAX_ALIGN_COST_RATIO * median:
                u.flags.append(f"transcript: fits the audio {u.align_cost / median:.2f}x worse than {whose} do "
                               f"(alignment cost, over {MAX_ALIGN_COST_RATIO:g}x the median)")
        line = f"transcripts: aligned to the audio by {self.aligner.name} ({len(checked)} of {len(utts)} files)"
        if self.unknown:
            words = sorted({w for ws in self.unknown.values() for w in ws})
            line += (f"; {len(self.unknown)} not checked, words outside its dictionary: "
                     f"{', '.join(words[:8])}{' ...' if len(words) > 8 else ''} "
                     "(their align_cost is null in check.json)")
        return line


class AsrCheck:
    """The word (zh, ja: character) error rate of each transcript against an offline ASR's; an ASR that gets
    most files wrong judges none (its line says so)."""

    def __init__(self, transcriber, language: str):
        self.transcriber, self.language = transcriber, language
        self.heard: dict[str, str] = {}

    def measure(self, u: Utterance, wave: np.ndarray) -> None:
        from valle.eval.asr import error_counts

        self.heard[u.id] = self.transcriber.transcribe(wave, SAMPLE_RATE, self.language, u.id)
        errors, n = error_counts(u.text, self.heard[u.id], self.language)
        u.wer = errors / n

    def flag(self, utts: list[Utterance]) -> str:
        name = self.transcriber.name
        median = statistics.median(u.wer for u in utts)
        if median > MAX_WER:
            return (f"transcripts not judged: {name} gets most files wrong here (median WER {median:.2f}, "
                    f"over {MAX_WER:g}); use a Whisper model")
        for u in utts:
            if u.wer > MAX_WER:
                u.flags.append(f"transcript: ASR heard {self.heard[u.id]!r}, WER {u.wer:.2f} (over {MAX_WER:g})")
        return f"transcripts: median WER {median:.2f} against {name}"


def flag_voices(utts: list[Utterance]) -> None:
    """Each file's voice against the centroid of its speaker's other files (speakers with 3 files or more). Files
    flagged for clipping or noise are left out: the damage changes the embedding, and their flag says why."""
    by_speaker = collections.defaultdict(list)
    for u in utts:
        if u.embedding is not None and not any(f.startswith(DAMAGED) for f in u.flags):
            by_speaker[u.speaker].append(u)
    for group in by_speaker.values():
        if len(group) < 3:
            continue
        embeddings = np.stack([u.embedding for u in group])  # (N, D), each of norm 1
        total = embeddings.sum(axis=0)
        for u, e in zip(group, embeddings):
            others = total - e  # leave-one-out centroid (D,)
            u.voice_similarity = float(e @ others / np.linalg.norm(others))
        median = statistics.median(u.voice_similarity for u in group)
        for u in group:
            if u.voice_similarity < median - VOICE_MARGIN:
                u.flags.append(f"another voice: similarity {u.voice_similarity:.2f} to speaker {u.speaker}'s "
                               f"other files (their median {median:.2f}, margin {VOICE_MARGIN:g})")


def flag_duplicates(utts: list[Utterance]) -> None:
    """A file whose text (its letters, digits and spaces, in lower case) an earlier file of the same speaker
    already has (speakers reading the same sentences is no duplicate), or whose audio (loudness profile at the same
    length) any earlier file has."""
    texts: dict[tuple[str, str], str] = {}
    by_length: dict[int, list[Utterance]] = collections.defaultdict(list)
    for u in utts:
        key = (u.speaker, " ".join(_PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", u.text).lower()).split()))
        if key in texts:
            u.flags.append(f"duplicate text: same as {texts[key]}")
        texts.setdefault(key, u.id)
        same_length = by_length[len(u.profile)]
        twin = next((o for o in same_length if np.corrcoef(o.profile, u.profile)[0, 1]
                     > DUPLICATE_PROFILE_CORRELATION), None)
        if twin is not None:
            u.flags.append(f"duplicate audio: same as {twin.id} (loudness profile correlation over "
                           f"{DUPLICATE_PROFILE_CORRELATION:g})")
        same_length.append(u)


# --- the corpus ------------------------------------------------------------------------------------------------

def speaker_summary(utts: list[Utterance]) -> dict[str, dict]:
    """Per speaker: files, flagged files, minutes (all and usable), durations and speaking rate."""
    out = {}
    for speaker in sorted({u.speaker for u in utts}):
        group = [u for u in utts if u.speaker == speaker]
        durations = [u.duration for u in group]
        out[speaker] = {
            "files": len(group), "flagged": sum(bool(u.flags) for u in group),
            "minutes": round(sum(durations) / 60, 2),
            "usable_minutes": round(sum(u.duration for u in group if not u.flags) / 60, 2),
            "duration_s": {"min": round(min(durations), 2), "median": round(statistics.median(durations), 2),
                           "max": round(max(durations), 2)},
            "phones_per_second": round(statistics.median(u.phones_per_second for u in group), 1),
        }
    return out


def verdict(utts: list[Utterance], speakers: dict[str, dict], report: Path) -> str:
    """One line: what the corpus is good for, or what is missing (and the report's path)."""
    from valle.plan import choose_settings

    see = f"see {report}"
    flagged = [u for u in utts if u.flags]
    if len(flagged) == len(utts):
        reasons = collections.Counter(f.split(":", 1)[0] for u in utts for f in u.flags).most_common(3)
        why = ", ".join(f"{reason} ({n})" for reason, n in reasons)
        return (f"all {len(utts)} files are flagged ({why}): nothing usable to fine-tune on; record cleaner audio "
                f"or fix the transcripts; {see}")
    minutes = sum(s["usable_minutes"] for s in speakers.values())
    if minutes < MIN_MINUTES:
        return (f"only {minutes:.1f} min of usable speech: at least {MIN_MINUTES:g} min is needed (10 or more "
                f"recommended); add recordings; {see}")
    for speaker, s in speakers.items():
        others = sum(1 for u in utts if u.speaker == speaker and any(f.startswith("another voice") for f in u.flags))
        if others >= HIDDEN_VOICE_MIN_FILES and others >= HIDDEN_VOICE_SHARE * s["files"]:
            return (f"speaker {speaker}: {others} of {s['files']} files sound like another voice: give each voice "
                    f"its own speaker (a folder each) or remove those files; {see}")
    num_speakers = sum(1 for s in speakers.values() if s["usable_minutes"] > 0)
    method = choose_settings(minutes, num_speakers).method
    recommended = "LoRA" if method.value == "lora" else "full fine-tuning"
    plural = "s" if num_speakers != 1 else ""
    dropped = f", {len(flagged)} of {len(utts)} files flagged" if flagged else ""
    return f"{minutes:.1f} min of speech from {num_speakers} speaker{plural}{dropped}: {recommended} recommended; {see}"


@dataclass
class Check:
    """What `check_corpus` found: the utterances, the speakers' figures, how the ASR and voice checks ran, and
    the verdict."""

    utterances: list[Utterance]
    speakers: dict[str, dict]
    notes: list[str]  # one line each: ASR and voice checks, used or skipped and why
    verdict: str

    def flagged(self) -> list[Utterance]:
        return [u for u in self.utterances if u.flags]

    def to_json(self) -> dict:
        thresholds = {name: value for name, value in globals().items()
                      if name.isupper() and isinstance(value, float | int) and name not in ("FRAME",)}
        return {"verdict": self.verdict, "notes": self.notes, "thresholds": thresholds, "speakers": self.speakers,
                "utterances": [u.row() for u in self.utterances]}


def check_corpus(cuts: list, language: str, encoder, transcripts, notes: list[str], report: Path) -> Check:
    """Measure and flag every cut (lhotse MonoCuts of one supervision); `encoder` (a SpeakerEncoder) and
    `transcripts` (an AlignmentCheck or AsrCheck) may be None (their checks are skipped, `notes` says why). The
    cuts are read CHUNK at a time: the speaker encoder embeds a chunk in one batch."""
    from tqdm import tqdm

    utts = []
    for start in tqdm(range(0, len(cuts), CHUNK), desc=f"check ({CHUNK} files a step)"):
        utts += measure_chunk(cuts[start:start + CHUNK], language, encoder, transcripts)
    flag_signal(utts)
    if transcripts is not None:
        notes.append(transcripts.flag(utts))
    if encoder is not None:
        flag_voices(utts)
    flag_duplicates(utts)
    speakers = speaker_summary(utts)
    return Check(utts, speakers, notes, verdict(utts, speakers, report))


def measure_chunk(cuts: list, language: str, encoder, transcripts) -> list[Utterance]:
    """The measures of a few cuts, their transcripts' and voices' too (when those checks run)."""
    waves = [cut.load_audio()[0] for cut in cuts]  # each (T,) at 24 kHz
    utts = []
    for cut, wave in zip(cuts, waves):
        sup = cut.supervisions[0]
        u = measure(cut.id, (sup.custom or {}).get("source", cut.recording.sources[0].source), sup.speaker or "",
                    sup.text or "", wave, count_phones(sup.text or "", language))
        if transcripts is not None:
            transcripts.measure(u, wave)
        utts.append(u)
    if encoder is not None:
        for u, embedding in zip(utts, encoder.embed_many(waves, SAMPLE_RATE)):
            u.embedding = embedding
    return utts


# --- reports ---------------------------------------------------------------------------------------------------

def write_reports(data_dir: Path, check: Check) -> None:
    from valle.data.files import write_text

    write_text(data_dir / REPORT_JSON, json.dumps(check.to_json(), indent=1, ensure_ascii=False) + "\n")
    write_text(data_dir / REPORT_HTML, render_html(check))


def render_html(check: Check) -> str:
    e = html.escape
    speakers = "".join(
        f"<tr><td>{e(name)}</td><td>{s['files']}</td><td>{s['flagged']}</td><td>{s['minutes']}</td>"
        f"<td>{s['usable_minutes']}</td><td>{s['duration_s']['min']} / {s['duration_s']['median']} / "
        f"{s['duration_s']['max']}</td><td>{s['phones_per_second']}</td></tr>" for name, s in check.speakers.items())
    flagged = "".join(f"<tr><td>{e(u.path)}</td><td>{e(u.speaker)}</td><td>{e(u.text)}</td>"
                      f"<td>{'<br>'.join(e(f) for f in u.flags)}</td></tr>" for u in check.flagged())
    return (
        "<!doctype html><meta charset='utf-8'><title>Data check</title><style>body{font-family:sans-serif}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}</style>"
        f"<h1>Data check</h1><p><b>{e(check.verdict)}</b></p>"
        + "".join(f"<p>{e(n)}</p>" for n in check.notes)
        + "<h2>Speakers</h2><table><tr><th>speaker</th><th>files</th><th>flagged</th><th>minutes</th>"
        "<th>usable minutes</th><th>duration min / median / max (s)</th><th>phones/s (median)</th></tr>"
        f"{speakers}</table><h2>Flagged files ({len(check.flagged())} of {len(check.utterances)})</h2>"
        "<p>Listed, not removed: <code>--drop-flagged</code> moves them to rejected.tsv.</p>"
        f"<table><tr><th>file</th><th>speaker</th><th>text</th><th>flags</th></tr>{flagged}</table>\n")


def flagged_rows(data_dir: Path) -> tuple[str, list[tuple[str, str]]]:
    """(verdict, (file, flags) rows) of data_dir/check.json; ("", []) when the data was not checked."""
    path = data_dir / REPORT_JSON
    if not path.is_file():
        return "", []
    report = json.loads(path.read_text(encoding="utf-8"))
    return report["verdict"], [(u["path"], "; ".join(u["flags"])) for u in report["utterances"] if u["flags"]]


def digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


# --- the stage -------------------------------------------------------------------------------------------------

def _restore_dropped(manifests: Path, part: str) -> None:
    """Put back into cuts_<part> the cuts an earlier --drop-flagged took out of that very file (its digest names
    them); a file the normalize stage wrote again already holds them."""
    cuts_file = manifests / f"cuts_{part}.jsonl.gz"
    for dropped in manifests.glob(f"flagged_{part}.*.jsonl.gz"):
        if dropped.name == f"flagged_{part}.{digest(cuts_file)}.jsonl.gz":
            from valle.data.files import load_cuts, save_cuts

            save_cuts(list(load_cuts(cuts_file)) + list(load_cuts(dropped)), cuts_file)
        dropped.unlink()


def _drop(manifests: Path, parts: list[str], flagged: set[str]) -> None:
    """cuts_<part> without the flagged cuts; those go to flagged_<part>.<digest of the new cuts_<part>>."""
    from valle.data.files import load_cuts, save_cuts

    for part in parts:
        cuts_file = manifests / f"cuts_{part}.jsonl.gz"
        cuts = load_cuts(cuts_file)
        out = [c for c in cuts if c.id in flagged]
        if out:
            save_cuts([c for c in cuts if c.id not in flagged], cuts_file)
            save_cuts(out, manifests / f"flagged_{part}.{digest(cuts_file)}.jsonl.gz")


def _tools(asr: str, language: str) -> tuple[object, object, list[str]]:
    """The speaker encoder and the transcript check, or None and a line saying why not."""
    from valle.errors import UserError
    from valle.eval.speaker import get_speaker_encoder

    try:
        encoder, voice = get_speaker_encoder(), "voices: resemblyzer embeddings against each speaker's centroid"
    except UserError as e:
        encoder, voice = None, f"voice check skipped: {e}"
    transcripts, line = _transcript_check(asr, language)
    return encoder, transcripts, [voice] + ([line] if line else [])


def _transcript_check(asr: str, language: str) -> tuple[object, str]:
    """--check-asr: auto (English: alignment with pocketsphinx when installed; other languages: none), none,
    pocketsphinx (English: alignment) or a Whisper model (WER) -> (the check or None, a line when it is None)."""
    if asr == "none":
        return None, "transcripts not checked: --check-asr none"
    if asr in ("auto", "pocketsphinx") and language == "en":
        try:
            from valle.eval.asr import PocketsphinxAligner

            return AlignmentCheck(PocketsphinxAligner()), ""
        except ImportError:
            return None, ("transcripts not checked: pocketsphinx is not installed (pip install "
                          "'valle-toolkit[segment]') or pass a Whisper model with --check-asr")
    if asr in ("auto", "pocketsphinx"):
        return None, (f"transcripts not checked: pocketsphinx aligns English only, not {language!r}; a Whisper "
                      f"model checks them (--check-asr small, the asr extra)")
    from valle.eval.asr import get_transcriber

    transcriber, line = get_transcriber(asr)
    if transcriber is None:
        return None, line.replace("--asr-model", "--check-asr")  # the factory names evaluate's option
    return AsrCheck(transcriber, language), ""


def stage_check(data_dir: Path, language: str, asr: str = "auto", drop_flagged: bool = False) -> Check:
    """manifests/cuts_<part> -> check.json, check.html, summary.json's "check", the verdict (printed); with
    drop_flagged the flagged cuts leave cuts_<part> for rejected.tsv (unless every file is flagged)."""
    from valle.data.files import load_cuts
    from valle.data.rejections import Rejection, update_summary, write_rejections
    from valle.errors import UserError

    manifests = data_dir / "manifests"
    parts = sorted(p.name[len("cuts_"):-len(".jsonl.gz")] for p in manifests.glob("cuts_*.jsonl.gz"))
    if not parts:
        raise UserError(f"no {manifests}/cuts_*.jsonl.gz: run the normalize stage of prepare.sh first")
    for part in parts:
        _restore_dropped(manifests, part)
    cuts = [c for part in parts for c in load_cuts(manifests / f"cuts_{part}.jsonl.gz")]
    encoder, transcripts, notes = _tools(asr, language)
    check = check_corpus(cuts, language, encoder, transcripts, notes, data_dir / REPORT_HTML)
    flagged = check.flagged()
    dropped = []
    if drop_flagged and len(flagged) < len(check.utterances):
        _drop(manifests, parts, {u.id for u in flagged})
        dropped = [Rejection(u.path, "flagged by the check", "; ".join(u.flags)) for u in flagged]
    elif drop_flagged:
        check.notes.append("--drop-flagged: nothing dropped, as every file is flagged")
    write_rejections(data_dir, "check", dropped)
    write_reports(data_dir, check)
    update_summary(data_dir, "check", {"files": len(check.utterances), "flagged": len(flagged),
                                       "dropped": len(dropped), "verdict": check.verdict})
    print("\n".join(check.notes + [f"flagged: {len(flagged)} of {len(check.utterances)} files "
                                   f"({'moved to rejected.tsv' if dropped else 'kept'})", check.verdict]), flush=True)
    return check
