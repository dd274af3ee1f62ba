"""One segmentation run over recordings -> OUT/segments.tsv, clips/, review.html, metadata.txt, rejected.tsv.

The clips are written files (mono 24 kHz wav, clips/<id>.wav), not offsets: the review page plays them and the
existing stages read OUT/metadata.txt (`clips/<id>.wav|text|speaker`, the kept rows only) unchanged.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import numbers
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from valle.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, AudioInfo
from valle.data.files import write_text, write_whole
from valle.data.rejections import Rejection
from valle.data.segment.align import align, split_sentences
from valle.data.segment.audio import check_recording, read_span, speech_probabilities
from valle.data.segment.cuts import CutOptions, Span, find_spans, join_runs, pad, speech_runs
from valle.data.segment.review import Segment, read_tsv, write_html, write_tsv
from valle.errors import UserError
from valle.eval.asr import FasterWhisper, Pocketsphinx, Transcriber, Word, get_transcriber
from valle.eval.detectors import detect

TRANSCRIBE = ("auto", "whisper", "pocketsphinx", "none")
CLIPPED = 0.999  # a sample this loud is clipped
MAX_CLIPPED_SHARE = 0.001  # more clipped samples than this: flagged
ALIGN_GAP = 0.15  # the aligner sees speech runs split at pauses this long


@dataclass(frozen=True)
class SegmentOptions:
    """The segmenter's options, checked here once for every face (the command, the page, the recipe): a value out
    of range is a UserError naming the command-line flag."""

    cut: CutOptions = field(default_factory=CutOptions)
    transcribe: str = "auto"  # when a recording has no text: auto (whisper if installed, else pocketsphinx)
    whisper_model: str = "small"
    language: str = "en"  # or auto (Whisper detects it)
    keep_speaker: Path | None = None  # a few seconds of the target voice
    speaker_threshold: float = 0.8  # lower similarity to keep_speaker: other_speaker
    num_speakers: int = 0  # > 1: cluster the speakers of each recording
    min_confidence: float | None = None  # lower mean word probability: low_confidence; None: the engine's own
    text: Path | None = None  # the known text of the (only) recording; default: its same-stem .txt
    device: str = "cpu"
    threads: int = 1  # torch threads; one is fastest on a small machine (bench/segment.py measures with it)

    def __post_init__(self):
        if self.transcribe not in TRANSCRIBE:
            raise UserError(f"--transcribe {self.transcribe}: choose one of {', '.join(TRANSCRIBE)}")
        if not self.language.strip():
            raise UserError("--language is empty: give a language code (en, zh, ja ...) or auto")
        if not -1 <= self.speaker_threshold <= 1:  # written so that NaN fails
            raise UserError(f"--speaker-threshold {self.speaker_threshold}: need a cosine similarity in [-1, 1]")
        if not (_whole(self.num_speakers) and (self.num_speakers == 0 or self.num_speakers >= 2)):
            raise UserError(f"--num-speakers {self.num_speakers}: need 0 (off) or a whole number >= 2")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise UserError(f"--min-confidence {self.min_confidence}: need a probability in [0, 1]")
        if not (_whole(self.threads) and self.threads >= 1):
            raise UserError(f"--threads {self.threads}: need a whole number >= 1")
        for flag, path in (("--keep-speaker", self.keep_speaker), ("--text", self.text)):
            if path is not None and not Path(path).is_file():
                raise UserError(f"{flag} {path}: no such file")


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass
class Result:
    segments: list[Segment]
    rejected: list[Rejection]
    lines: list[str]  # what the run did, for the user
    set_aside: list[str]  # per filter: how many segments it set aside and the option that changes it

    @property
    def kept(self) -> list[Segment]:
        return [s for s in self.segments if s.keep == "yes"]


def find_recordings(inputs: list[Path]) -> list[Path]:
    """Audio files given or found (recursively) in the folders given, sorted."""
    found = []
    for p in map(Path, inputs):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    if not found:
        raise UserError(f"no recordings ({' '.join(AUDIO_EXTENSIONS)}) in {' '.join(map(str, inputs))}")
    return [f.resolve() for f in found]


def get_word_transcriber(opts: SegmentOptions) -> tuple[Transcriber | None, str]:
    """The backend for recordings without text (eval.asr's factory, with the segmenter's rule: word timings, and
    an engine asked for that is missing is an error), and a line saying which."""
    choice = opts.transcribe
    if choice == "auto":
        if importlib.util.find_spec("faster_whisper") is not None:
            choice = "whisper"
        else:
            choice = "pocketsphinx" if opts.language in ("en", "auto") else "none"
    model = opts.whisper_model if choice == "whisper" else choice
    return get_transcriber(model, opts.device, words=True)


def known_text(recording: Path, opts: SegmentOptions) -> str | None:
    """--text, or the recording's same-stem .normalized.txt / .txt / .lab."""
    from valle.data.sources import _find_transcript

    path = opts.text or _find_transcript(recording)
    return path.read_text(encoding="utf-8-sig") if path else None


def _normalize(sentence: str, language: str) -> str:
    if language == "en":
        from valle.text.g2p_en import normalize_numbers

        return normalize_numbers(sentence)
    return sentence


def split_at_sentences(span: Span, words: list[Word], o: CutOptions) -> list[tuple[Span, list[Word]]]:
    """Cut a span between words where a sentence ends (. ! ?), both sides at least segment_min long;
    the span is widened so that no word is cut at its edges. Word times are seconds into the recording."""
    if words:
        span = Span(min(span.start, words[0].start), max(span.end, words[-1].end), span.gaps)
    parts, first, start = [], 0, span.start
    for k in range(len(words) - 1):
        if words[k].text.endswith((".", "!", "?")):
            cut = (words[k].end + words[k + 1].start) / 2
            if cut - start >= o.segment_min and span.end - cut >= o.segment_min:
                parts.append((Span(start, words[k].end), words[first: k + 1]))
                first, start = k + 1, words[k + 1].start
    parts.append((Span(start, span.end), words[first:]))
    return parts


class _Tools:
    """The models, loaded once and only when needed."""

    def __init__(self, opts: SegmentOptions):
        self.opts = opts
        self.lines = []
        self.reference = self._reference() if opts.keep_speaker else None  # at once: a bad file is the run's error

    @functools.cached_property
    def encoder(self):
        from valle.eval.speaker import get_speaker_encoder

        return get_speaker_encoder(device=self.opts.device)

    def _reference(self):
        """The --keep-speaker voice's embedding."""
        info = check_recording(Path(self.opts.keep_speaker))
        embedding = self.encoder.embed(read_span(info, 0, info.duration, SAMPLE_RATE), SAMPLE_RATE)
        if embedding is None:
            raise UserError(f"--keep-speaker {self.opts.keep_speaker}: no voice in it (silent or under 0.3 s)")
        return embedding

    def speaker_score(self, embedding) -> float:
        """Similarity of an embedding to the --keep-speaker voice; NaN without a reference or a voice."""
        return math.nan if self.reference is None else self.encoder.similarity(self.reference, embedding)

    def is_target(self, wave, sample_rate: int) -> bool:
        """Whether a waveform (T,) may be the --keep-speaker voice (always, without a reference)."""
        if self.reference is None:
            return True
        score = self.speaker_score(self.encoder.embed(wave, sample_rate))
        return not score < self.opts.speaker_threshold  # NaN (no voice to embed): let the filters decide

    @functools.cached_property
    def transcriber(self) -> Transcriber | None:
        """The ASR backend for recordings without text; None: transcription off."""
        transcriber, line = get_word_transcriber(self.opts)
        self.lines.append(line)
        return transcriber

    @property
    def min_confidence(self) -> float:
        """--min-confidence, or the default of the engine in use."""
        if self.opts.min_confidence is not None:
            return self.opts.min_confidence
        return self.transcriber.min_confidence if self.transcriber else Transcriber.min_confidence


def engine_confidences() -> str:
    """The engines' own --min-confidence defaults, as help and messages state them."""
    return f"whisper {FasterWhisper.min_confidence}, pocketsphinx {Pocketsphinx.min_confidence}"


def _spans_with_text(info: AudioInfo, probs: np.ndarray, levels: np.ndarray, text: str | None, opts: SegmentOptions,
                     tools: _Tools, reports: list[Rejection]) -> list[tuple[Span, list[Word] | None]]:
    """Known text: aligned sentences; otherwise spans at pauses, transcribed (words) when a backend is set."""
    o = opts.cut
    if text is not None:
        runs = [(s.start, s.end) for s in join_runs(speech_runs(probs, levels, o), ALIGN_GAP)]
        try:
            result = align(split_sentences(text), runs)
        except ValueError as e:
            raise AudioError(info.path, "text not aligned", str(e)) from None
        for number, sentence, at in result.missing:
            reports.append(Rejection(f"{info.path}:{at:.2f}", "not in the audio", f"sentence {number} of the text, "
                                     f"{sentence[:80]!r}, is not spoken after {at:.2f} s"))
        for start, end in result.extra:
            reports.append(Rejection(f"{info.path}:{start:.2f}-{end:.2f}", "not in the text",
                                     f"speech from {start:.2f} to {end:.2f} s matches no sentence of the text"))
        return [(s, None) for s in result.spans]
    spans = find_spans(probs, levels, o)
    if tools.transcriber is None:
        return [(s, []) for s in spans]
    out = []
    for s in spans:
        wave = read_span(info, s.start, s.end, 16000)  # (T,) at 16 kHz
        if not tools.is_target(wave, 16000):  # set aside anyway: not worth the ASR's time
            out.append((s, []))
            continue
        words = tools.transcriber.words(wave, 16000, opts.language)
        words = [Word(w.start + s.start, w.end + s.start, w.text, w.probability) for w in words]
        out += split_at_sentences(s, words, o)
    return out


def _flags(wave: torch.Tensor, seconds: float, score: float, confidence: float, min_confidence: float, text: str,
           opts: SegmentOptions) -> list[str]:
    """Why a segment should not be trained on (the evaluation's detectors, clipping, length, voice, text)."""
    flags = [f for f in detect(wave, SAMPLE_RATE).flags if f in ("silent", "noise")]
    if (wave.abs() >= CLIPPED).float().mean() > MAX_CLIPPED_SHARE:
        flags.append("clipped")
    if seconds < opts.cut.segment_min:
        flags.append("too_short")
    if seconds > opts.cut.segment_max + 2 * opts.cut.pad:
        flags.append("too_long")
    if score < opts.speaker_threshold:  # NaN (no reference) compares False
        flags.append("other_speaker")
    if confidence < min_confidence:  # NaN (not transcribed) compares False
        flags.append("low_confidence")
    if not text:
        flags.append("no_text")
    return flags


def _write_clip(path: Path, wave: np.ndarray) -> None:
    sf.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def segment_recording(recording: Path, out_dir: Path, opts: SegmentOptions, tools: _Tools,
                      reports: list[Rejection]) -> list[Segment]:
    """One recording -> its segments (clips written to out_dir/clips); problems appended to `reports`."""
    info = check_recording(recording)
    probs, levels = speech_probabilities(info)
    text = known_text(recording, opts)
    spans = _spans_with_text(info, probs, levels, text, opts, tools, reports)
    if not spans:
        raise AudioError(recording, "no speech",
                         f"the voice-activity detector found no speech in {info.duration:.1f} s")
    bounds = pad([s for s, _ in spans], opts.cut, info.duration)
    clips = out_dir / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    segments, embeddings = [], []
    for (span, words), (start, end) in zip(spans, bounds):
        wave = read_span(info, start, end, SAMPLE_RATE)  # (T,) mono 24 kHz
        seg_id = f"{recording.stem}_{round(start * 1000):07d}-{round(end * 1000):07d}"
        write_whole(clips / f"{seg_id}.wav", functools.partial(_write_clip, wave=wave.numpy()), "clips")
        need_voice = opts.keep_speaker or opts.num_speakers > 1
        embedding = tools.encoder.embed(wave, SAMPLE_RATE) if need_voice else None
        embeddings.append(embedding)
        score = tools.speaker_score(embedding)
        if words is None:  # aligned: the text is the book's
            original, spoken, confidence = span.text, _normalize(span.text, opts.language), 1.0
        else:
            original, spoken = "", " ".join(w.text for w in words)
            confidence = float(np.mean([w.probability for w in words])) if words else math.nan
        floor = tools.min_confidence if words else 0.0  # words come from the transcriber: its scale
        flags = _flags(wave, end - start, score, confidence, floor, spoken, opts)
        segments.append(Segment(seg_id, str(recording), start, end, recording.stem, score, confidence,
                                " ".join(flags), "no" if flags else "yes", spoken, original))
    if opts.num_speakers > 1:
        label_speakers(segments, embeddings, opts.num_speakers)
    return segments


def label_speakers(segments: list[Segment], embeddings: list, n: int) -> None:
    """Cluster the segments' voices into n speakers (agglomerative, cosine): speaker = <stem>_spk1.. by size."""
    from sklearn.cluster import AgglomerativeClustering

    have = [i for i, e in enumerate(embeddings) if e is not None]
    if len(have) < n:
        return
    labels = AgglomerativeClustering(n_clusters=n, metric="cosine", linkage="average").fit_predict(
        np.stack([embeddings[i] for i in have]))  # (S,)
    order = {lab: k + 1 for k, (lab, _) in enumerate(sorted(
        ((lab, (labels == lab).sum()) for lab in set(labels)), key=lambda x: -x[1]))}
    for i, lab in zip(have, labels):
        segments[i].speaker = f"{segments[i].speaker}_spk{order[lab]}"


SET_ASIDE = "segment set aside"  # rejected.tsv's kind for a segment with keep=no


def save_edits(out_dir: Path, segments: list[Segment]) -> None:
    """The user's edits (text, keep) of every row -> all outputs, keeping rejected.tsv's recording-level lines."""
    old = out_dir / "rejected.tsv"
    lines = old.read_text(encoding="utf-8").splitlines() if old.is_file() else []
    write_outputs(out_dir, segments, [r for r in map(_read_rejection, filter(None, lines)) if r.kind != SET_ASIDE])


def write_outputs(out_dir: Path, segments: list[Segment], rejected: list[Rejection]) -> None:
    """segments.tsv, review.html, metadata.txt (kept rows, for scan) and rejected.tsv."""
    write_tsv(out_dir / "segments.tsv", segments)
    write_html(out_dir / "review.html", segments)
    kept = [s for s in segments if s.keep == "yes" and s.text.strip()]
    write_text(out_dir / "metadata.txt", "".join(f"clips/{s.id}.wav|{' '.join(s.text.replace('|', ' ').split())}|"
                                                 f"{s.speaker}\n" for s in kept), "metadata.txt")
    left_out = [Rejection(f"clips/{s.id}.wav", SET_ASIDE,
                          f"{s.flags or 'keep=no'} ({Path(s.file).name} {s.start:.2f}-{s.end:.2f} s)")
                for s in segments if s.keep != "yes"]
    write_text(out_dir / "rejected.tsv", "".join(r.line() for r in rejected + left_out), "rejected.tsv")


def _read_rejection(line: str) -> Rejection:
    """A `Rejection.line()` read back."""
    path, reason = line.split("\t", 1)
    kind, detail = reason.split(": ", 1)
    return Rejection(path, kind, detail)


def segment_recordings(inputs: list[Path], out_dir: Path, opts: SegmentOptions) -> Result:
    """Segment every recording not yet in out_dir/segments.tsv; keep every row already there as the user left it.

    The outputs are written after each recording: a run stopped for any reason leaves the finished recordings'
    segments behind, and the next run takes them as done. A recording that cannot be read at any point is a
    rejected.tsv line; the others go on."""
    from tqdm import tqdm

    if opts.text and len(inputs) != 1:
        raise UserError("--text goes with one recording; for several, put a same-stem .txt next to each")
    recordings = find_recordings(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    tsv, notes = out_dir / "segments.tsv", out_dir / "alignment.tsv"
    segments = read_tsv(tsv) if tsv.is_file() else []
    done = {s.file for s in segments}
    rejected, lines = [], []
    alignment = notes.read_text(encoding="utf-8") if notes.is_file() else ""

    def save() -> list[Rejection]:  # -> every recording-level report so far
        write_text(notes, alignment, "alignment.tsv")
        reports = rejected + [_read_rejection(line) for line in alignment.splitlines() if line]
        write_outputs(out_dir, segments, reports)
        return reports

    threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        tools = _Tools(opts)
        for recording in tqdm(recordings, desc="segment", unit="recording", disable=len(recordings) < 2):
            if str(recording) in done:
                lines.append(f"{recording.name}: {sum(s.file == str(recording) for s in segments)} segments "
                             "already in segments.tsv (your edits kept; delete its rows to segment it again)")
                continue
            reports = []
            try:
                new = segment_recording(recording, out_dir, opts, tools, reports)
            except AudioError as e:
                rejected.append(Rejection(str(recording), e.kind, e.detail))
                lines.append(f"{recording.name}: {e.kind}: {e.detail}")
                continue
            segments += new
            alignment += "".join(r.line() for r in reports)
            lines.append(f"{recording.name}: {len(new)} segments, {sum(s.keep == 'yes' for s in new)} kept"
                         + "".join(f"; {r.kind}: {r.detail}" for r in reports))
            save()  # this recording is done, whatever stops the run later
    finally:
        torch.set_num_threads(threads)
    return Result(segments, save(), tools.lines + lines, set_aside(segments, opts))


def set_aside(segments: list[Segment], opts: SegmentOptions) -> list[str]:
    """One line per reason segments were set aside: how many, and the option that changes it."""
    fixes = {"other_speaker": f"lower --speaker-threshold (now {opts.speaker_threshold}) or give a cleaner "
                              "--keep-speaker reference",
             "low_confidence": "lower --min-confidence (now "
                               f"{opts.min_confidence if opts.min_confidence is not None else engine_confidences()})",
             "no_text": "--transcribe whisper or pocketsphinx, or give the text (--text or a same-stem .txt)",
             "too_short": f"lower --segment-min (now {opts.cut.segment_min})",
             "too_long": f"raise --segment-max (now {opts.cut.segment_max})"}
    counts = Counter(flag for s in segments if s.keep != "yes" for flag in (s.flags.split() or ["keep=no"]))
    return [f"set aside by {flag}: {n} of {len(segments)}; "
            + fixes.get(flag, "listen in review.html" if flag != "keep=no" else "set by you in segments.tsv")
            for flag, n in counts.most_common()]
