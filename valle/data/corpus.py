"""Corpus -> validated mono 24 kHz lhotse cuts, with a report of every file that was converted or rejected.

Two kinds of input share one path:
- the user's own recordings (`read_corpus`): a folder of audio files with same-stem transcripts, or a
  metadata file of `path|text[|speaker]` lines (LJSpeech `id|text|normalized` too);
- lhotse manifests (`entries_from_manifests`), e.g. LibriTTS from `lhotse.recipes.prepare_libritts`.
Both become `Entry` rows; `normalize_entries` checks every file, downmixes/resamples what needs it and
returns one MonoCut (one supervision) per kept utterance.
"""

from __future__ import annotations

import collections
import io
import logging
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf
import torch
from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource
from tqdm import tqdm

from valle.audio import (AUDIO_EXTENSIONS, HOP_LENGTH, SAMPLE_RATE, AudioError, audio_info, code_frames, level_dbfs,
                         load_audio)
from valle.errors import UserError
from valle.storage import check_free_space, disk_full_error, is_disk_full

TRANSCRIPT_SUFFIXES = (".normalized.txt", ".txt", ".lab")  # preferred first
# Stages that report, in order. A stage's report replaces its own and drops those of the stages after it.
REPORT_STAGES = ("scan", "normalize", "codes", "text", "split")
TMP_PREFIX = ".tmp-"  # files being written (`write_whole`); one left by a killed run is removed by the next
log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One utterance as found in the corpus, before its audio was checked."""

    id: str
    audio: str  # absolute path of the audio file
    text: str
    speaker: str
    part: str = "all"  # corpus part (LibriTTS: train-clean-100, dev-clean, ...)


@dataclass
class Rejection:
    """A file (or metadata line) left out, and why: `kind` groups the summary, `detail` says what to fix."""

    path: str
    kind: str
    detail: str

    def line(self) -> str:
        return f"{self.path}\t{self.kind}: {self.detail}".replace("\n", " ") + "\n"


@dataclass
class NormalizeOptions:
    min_duration: float = 0.5  # seconds
    max_duration: float = 20.0  # seconds
    silence_db: float = -60.0  # RMS level in dBFS below which a file counts as silence


@dataclass
class Normalized:
    """What `normalize_entries` returns: the kept cuts and the report."""

    cuts: list[MonoCut] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    conversions: list[tuple[str, str]] = field(default_factory=list)  # (path, AudioInfo.describe())
    infos: list[dict] = field(default_factory=list)  # original rate/channels/format of every kept file


# ---------------------------------------------------------------------------------------------- reading


def read_corpus(corpus: str | Path) -> tuple[list[Entry], list[Rejection]]:
    """A folder (audio + same-stem transcripts, speaker = parent folder) or a metadata file."""
    corpus = Path(corpus).resolve()
    if corpus.is_dir():
        return scan_folder(corpus)
    if corpus.is_file():
        return read_metadata(corpus)
    raise UserError(f"--corpus {corpus}: no such folder or metadata file")


def _utt_id(relative: Path) -> str:
    """corpus-relative path without extension, '/' -> '_' (ids must be unique and flat for the HDF5 keys)."""
    return "_".join(relative.with_suffix("").parts)


def _read_text(path: Path, where: str) -> tuple[str | None, Rejection | None]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, Rejection(where, "transcript not UTF-8",
                               f"{path.name}: byte 0x{raw[e.start]:02x} at offset {e.start}; save it as UTF-8")
    return _clean_text(text, where)


def _clean_text(text: str, where: str) -> tuple[str | None, Rejection | None]:
    text = " ".join(text.split())
    if not text:
        return None, Rejection(where, "empty transcript", "the transcript is empty or only whitespace")
    return text, None


def _find_transcript(audio: Path) -> Path | None:
    stem = audio.name[: -len(audio.suffix)]
    for suffix in TRANSCRIPT_SUFFIXES:
        candidate = audio.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


class _Deduplicator:
    """Keeps the first entry of each utterance id, rejects the later ones."""

    def __init__(self):
        self.first: dict[str, str] = {}

    def check(self, utt_id: str, where: str) -> Rejection | None:
        if utt_id in self.first:
            return Rejection(where, "duplicate utterance id", f"{utt_id!r} already used by {self.first[utt_id]}")
        self.first[utt_id] = where
        return None


def walk_files(root: Path) -> tuple[list[Path], list[Rejection]]:
    """Every file under root (hidden files and folders left out), following symlinks to folders and files.
    A folder reached a second time (a symlink loop, or two links to one folder) is read once; that, a broken
    symlink and a folder that cannot be listed are reported."""
    files, skipped, seen = [], [], {}

    def unreadable(error: OSError) -> None:
        skipped.append(Rejection(error.filename, "unreadable folder", f"{error.strerror}: its files are left out"))

    for folder, dirs, names in os.walk(root, onerror=unreadable, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            skipped.append(Rejection(folder, "folder reached twice", f"the same folder as {seen[stat.st_dev, stat.st_ino]} "
                                                                     "(a symlink loop or a second link): read once"))
            dirs.clear()
            continue
        seen[stat.st_dev, stat.st_ino] = folder
        # real folders before links to them, so that a folder keeps its own name when it is also linked
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")),
                         key=lambda d: (os.path.islink(os.path.join(folder, d)), d))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(folder) / name
            if path.is_file():
                files.append(path)
            elif path.is_symlink():
                skipped.append(Rejection(str(path), "broken symlink",
                                         f"points to {os.readlink(path)}, which does not exist"))
    return sorted(files), skipped


def scan_folder(root: Path) -> tuple[list[Entry], list[Rejection]]:
    """Audio files anywhere under root (symlinked folders too); transcript x.normalized.txt, x.txt or x.lab next
    to x.wav."""
    files, rejections = walk_files(root)
    # a transcript belongs to any non-transcript file with its stem (an unsupported .m4a is reported once)
    audio_stems = {(p.parent, p.name[: -len(p.suffix)]) for p in files if p.suffix.lower() not in (".txt", ".lab")}
    entries, dedup = [], _Deduplicator()
    for path in files:
        suffix = path.suffix.lower()
        if suffix in (".txt", ".lab"):  # x.txt, x.normalized.txt, x.original.txt all belong to x.wav
            prefixes = [path.name[:i] for i, ch in enumerate(path.name) if ch == "."]
            if not any((path.parent, prefix) in audio_stems for prefix in prefixes):
                rejections.append(Rejection(str(path), "transcript without audio", "no audio file with this stem"))
            continue
        if suffix not in AUDIO_EXTENSIONS:
            rejections.append(Rejection(str(path), "unsupported extension",
                                        f"{suffix or 'no extension'}; audio must be {' '.join(AUDIO_EXTENSIONS)}"))
            continue
        transcript = _find_transcript(path)
        if transcript is None:
            stem = path.name[: -len(path.suffix)]
            rejections.append(Rejection(str(path), "missing transcript",
                                        f"no {' or '.join(stem + s for s in TRANSCRIPT_SUFFIXES)} next to it"))
            continue
        text, bad = _read_text(transcript, str(path))
        bad = bad or dedup.check(_utt_id(path.relative_to(root)), str(path))
        if bad:
            rejections.append(bad)
            continue
        speaker = path.parent.name if path.parent != root else root.name
        entries.append(Entry(_utt_id(path.relative_to(root)), str(path), text, speaker))
    return entries, rejections


def _metadata_audio(base: Path, name: str) -> Path:
    """A path with an extension is used as is; an id without one is looked up as wavs/ID.wav (LJSpeech),
    then ID.wav/.flac/.mp3/.ogg next to the metadata file."""
    if Path(name).suffix:
        return base / name
    candidates = [base / "wavs" / f"{name}.wav"] + [base / f"{name}{ext}" for ext in AUDIO_EXTENSIONS]
    return next((c for c in candidates if c.is_file()), candidates[0])


def looks_like_speaker(name: str) -> bool:
    """A speaker name: 1-64 characters, at most 3 words, no sentence punctuation (. , ! ? ; : quotes)."""
    return 0 < len(name) <= 64 and len(name.split()) <= 3 and not re.search(r"[.,!?;:\"“”«»]", name)


def _metadata_lines(meta: Path) -> tuple[list[tuple[str, list[str]]], list[Rejection]]:
    """(where, fields) of every non-empty, non-comment line of a metadata file; non-UTF-8 lines rejected."""
    lines, rejections = [], []
    for number, raw in enumerate(meta.read_bytes().splitlines(), 1):
        where = f"{meta}:{number}"
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError as e:
            rejections.append(Rejection(where, "transcript not UTF-8",
                                        f"byte 0x{raw[e.start]:02x} at offset {e.start}; save {meta.name} as UTF-8"))
            continue
        if line and not line.startswith("#"):
            lines.append((where, [f.strip() for f in line.split("|")]))
    return lines, rejections


def _ambiguity(fields: list[str], layout: int) -> str | None:
    """Why a line's '|' fields cannot be read safely, or None. `layout`: the field count of most of the file's lines.
    '|' may be part of a transcript, so only a line with as many fields as the file's lines (2: path|text,
    3: path|text|speaker or LJSpeech id|text|normalized) whose speaker looks like a name is read."""
    fix = "remove the '|' from the text (or give every line a speaker); the line is left out"
    if len(fields) > layout:
        return f"{len(fields)} '|'-separated fields where this file's lines have {layout}: is '|' part of the text? {fix}"
    if len(fields) == 3 and Path(fields[0]).suffix and not looks_like_speaker(fields[2]):
        return f"the third field {fields[2][:40]!r} does not look like a speaker name: is '|' part of the text? {fix}"
    return None


def read_metadata(meta: Path) -> tuple[list[Entry], list[Rejection]]:
    """Lines `path|text` or `path|text|speaker` (paths relative to the metadata file's folder), or LJSpeech
    `id|text|normalized` (an id without extension -> wavs/ID.wav; the normalized text is used). A line whose
    fields are ambiguous (`_ambiguity`: a '|' inside the text) is rejected, never cut."""
    base = meta.parent
    entries, dedup = [], _Deduplicator()
    lines, rejections = _metadata_lines(meta)
    counts = collections.Counter(min(len(fields), 3) for _, fields in lines if len(fields) >= 2)
    layout = max(counts, key=lambda n: (counts[n], -n)) if counts else 2  # a tie: the fewer fields
    for where, fields in lines:
        if len(fields) < 2 or not fields[0]:
            rejections.append(Rejection(where, "bad metadata line",
                                        f"expected path|text or path|text|speaker, got {len(fields)} field(s)"))
            continue
        ambiguous = _ambiguity(fields, layout)
        if ambiguous:
            rejections.append(Rejection(where, "ambiguous metadata line", ambiguous))
            continue
        number = where.rsplit(":", 1)[1]
        ljspeech = len(fields) == 3 and not Path(fields[0]).suffix
        audio = _metadata_audio(base, fields[0])
        text_field = (fields[2] or fields[1]) if ljspeech else fields[1]
        speaker = fields[2] if len(fields) == 3 and not ljspeech and fields[2] else base.name
        if audio.suffix.lower() not in AUDIO_EXTENSIONS:
            rejections.append(Rejection(where, "unsupported extension",
                                        f"{audio.name}: audio must be {' '.join(AUDIO_EXTENSIONS)}"))
            continue
        if not audio.is_file():
            rejections.append(Rejection(str(audio), "missing file",
                                        f"{meta.name} line {number} points to {fields[0]!r}, which does not exist"))
            continue
        utt_id = fields[0] if ljspeech else _utt_id(Path(os.path.relpath(audio, base)))
        text, bad = _clean_text(text_field, where)
        bad = bad or dedup.check(utt_id, where)
        if bad:
            rejections.append(bad)
            continue
        entries.append(Entry(utt_id, str(audio.resolve()), text, speaker))
    return entries, rejections


def entries_from_manifests(recordings: RecordingSet, supervisions: SupervisionSet, part: str) -> list[Entry]:
    """lhotse manifests with one supervision per recording (LibriTTS) -> Entry rows of `part`."""
    entries = []
    for sup in supervisions:
        source = recordings[sup.recording_id].sources[0].source
        entries.append(Entry(sup.id, str(Path(source).resolve()), sup.text or "", sup.speaker or part, part))
    return entries


def write_whole(path: Path, write, what: str) -> None:
    """write(tmp) makes the file at a temporary path, which then replaces `path`: a reader sees the old file or
    the whole new one, never half of it. A full disk is one UserError naming the path and the space left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TMP_PREFIX + path.name)  # same suffix: lhotse picks the format from it
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full_error(path, what, "free space (or use a --data-dir on a larger disk) and run the stage "
                                  "again: what was finished is kept") from None
        raise


def write_text(path: Path, text: str, what: str = "a report") -> None:
    write_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)


def save_entries(entries: list[Entry], path: Path) -> None:
    write_text(path, "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in entries), "the corpus entries")


def load_entries(path: Path) -> list[Entry]:
    if not path.is_file():
        raise UserError(f"{path} not found: run the corpus stage of prepare.sh first")
    return [Entry(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


# ------------------------------------------------------------------------------------------ normalizing


def _needs_copy(info) -> bool:
    """Mono 24 kHz WAV/FLAC is used where it is; everything else gets a converted copy (and a report line)."""
    return bool(info.conversions()) or info.format not in ("WAV", "FLAC")


def _reject(entry: Entry, kind: str, detail: str) -> tuple[None, Rejection, None]:
    return None, Rejection(entry.audio, kind, detail), None


def normalize_entry(entry: Entry, audio_dir: Path, opts: NormalizeOptions):
    """Check one file; return (cut, None, info) or (None, Rejection, None).

    Mono 24 kHz WAV/FLAC files are referenced where they are; anything else is downmixed/resampled
    and written to `audio_dir/<id>.flac` (16-bit, mono, 24 kHz).
    """
    try:
        info = audio_info(entry.audio)
        if info.duration > opts.max_duration:  # decided from the header: no need to decode an hour of audio
            return _reject(entry, "too long", f"{info.duration:.2f} s > --max-duration {opts.max_duration}")
        wave, info = load_audio(entry.audio)  # (T,) mono 24 kHz
    except AudioError as e:
        return _reject(entry, e.kind, e.detail)
    duration = wave.shape[0] / SAMPLE_RATE
    if duration < opts.min_duration:
        return _reject(entry, "too short", f"{duration:.2f} s < --min-duration {opts.min_duration}")
    if code_frames(duration) < 1:  # no codes: a cut of zero frames makes a NaN training step
        return _reject(entry, "too short", f"{wave.shape[0]} samples at 24 kHz: less than one codec frame "
                                           f"({HOP_LENGTH} samples); a cut needs at least one")
    if duration > opts.max_duration:  # compressed formats only estimate their length in the header
        return _reject(entry, "too long", f"{duration:.2f} s > --max-duration {opts.max_duration}")
    level = level_dbfs(wave)
    if level < opts.silence_db:
        return _reject(entry, "silence", f"RMS level {level:.1f} dBFS is below --silence-db {opts.silence_db}")
    path = Path(entry.audio)
    if _needs_copy(info):
        path = audio_dir / f"{entry.id}.flac"
        flac = io.BytesIO()  # encoded in memory: libsndfile reports a full disk only as "System error"
        sf.write(flac, wave.numpy(), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        write_whole(path, lambda tmp: tmp.write_bytes(flac.getbuffer()), "normalised audio")
    num_samples = wave.shape[0]
    recording = Recording(id=entry.id, sources=[AudioSource(type="file", channels=[0], source=str(path))],
                          sampling_rate=SAMPLE_RATE, num_samples=num_samples, duration=num_samples / SAMPLE_RATE)
    sup = SupervisionSegment(id=entry.id, recording_id=entry.id, start=0.0, duration=recording.duration, channel=0,
                             text=entry.text, speaker=entry.speaker, custom={"source": entry.audio})
    cut = MonoCut(id=entry.id, start=0.0, duration=recording.duration, channel=0, recording=recording,
                  supervisions=[sup])
    return cut, None, info


def _init_worker() -> None:
    torch.set_num_threads(1)


def _normalize_star(args):
    return normalize_entry(*args)


def copies_size(entries: list[Entry], audio_dir: Path, opts: NormalizeOptions) -> int:
    """Bytes the converted copies of `entries` add at most: 16-bit mono 24 kHz (FLAC stores no more than that),
    from the headers only, less the copies an earlier run left (they are replaced); files that will be rejected
    for their length or header are not counted."""
    total = 0
    for entry in entries:
        try:
            info = audio_info(entry.audio)
        except AudioError:
            continue
        if _needs_copy(info) and info.duration <= opts.max_duration:
            earlier = audio_dir / f"{entry.id}.flac"
            total += max(0, round(info.duration * SAMPLE_RATE) * 2 - (earlier.stat().st_size if earlier.is_file() else 0))
    return total


def normalize_entries(entries: list[Entry], audio_dir: Path, opts: NormalizeOptions, num_jobs: int = 1) -> Normalized:
    """Validate and convert every entry (in parallel with num_jobs > 1), with a tqdm progress bar. Free space for
    the converted copies is checked first."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    for tmp in audio_dir.glob(TMP_PREFIX + "*"):  # left by a killed run
        tmp.unlink()
    check_free_space(audio_dir, copies_size(entries, audio_dir, opts), "the normalised audio (mono 24 kHz FLAC copies)",
                     "free space or use a --data-dir on a larger disk, then run the normalize stage again")
    jobs = [(e, audio_dir, opts) for e in entries]
    result = Normalized()
    if num_jobs > 1:
        with ProcessPoolExecutor(num_jobs, initializer=_init_worker) as pool:
            outputs = list(tqdm(pool.map(_normalize_star, jobs, chunksize=8), total=len(jobs), desc="normalize"))
    else:
        outputs = [normalize_entry(*job) for job in tqdm(jobs, desc="normalize")]
    for entry, (cut, rejection, info) in zip(entries, outputs):
        if rejection is not None:
            result.rejections.append(rejection)
            continue
        result.cuts.append(cut)
        result.infos.append({"rate": info.sample_rate, "channels": info.channels, "kind": info.kind})
        if _needs_copy(info):
            result.conversions.append((entry.audio, info.describe()))
    return result


# ------------------------------------------------------------------------------------------ reporting


def write_rejections(data_dir: Path, stage: str, rejections: list[Rejection]) -> Path:
    """Store one stage's rejections and rebuild data_dir/rejected.tsv (path<TAB>reason) from all stages."""
    reports = data_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    for later in REPORT_STAGES[REPORT_STAGES.index(stage) + 1:]:
        (reports / f"rejected_{later}.tsv").unlink(missing_ok=True)
    write_text(reports / f"rejected_{stage}.tsv", "".join(r.line() for r in rejections))
    merged = "".join((reports / f"rejected_{s}.tsv").read_text(encoding="utf-8")
                     for s in REPORT_STAGES if (reports / f"rejected_{s}.tsv").is_file())
    out = data_dir / "rejected.tsv"
    write_text(out, merged)
    return out


def read_rejections(data_dir: Path) -> list[tuple[str, str]]:
    """(path, reason) rows of data_dir/rejected.tsv."""
    path = data_dir / "rejected.tsv"
    if not path.is_file():
        return []
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def update_summary(data_dir: Path, stage: str, values: dict) -> dict:
    """Set one stage's figures in data_dir/summary.json (dropping those of later stages); return the summary."""
    path = data_dir / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for later in REPORT_STAGES[REPORT_STAGES.index(stage) + 1:]:
        summary.pop(later, None)
    summary[stage] = values
    write_text(path, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def normalize_summary(result: Normalized) -> dict:
    """Kept / hours / speakers and what was converted (counts by kind)."""
    conv = collections.Counter()
    for info in result.infos:
        if info["channels"] > 1:
            conv[f"downmixed from {info['channels']} channels"] += 1
        if info["rate"] != SAMPLE_RATE:
            conv[f"resampled from {info['rate']} Hz"] += 1
        if info["kind"] not in ("16-bit PCM WAV", "16-bit PCM FLAC"):
            conv[f"decoded {info['kind']}"] += 1
    return {"kept": len(result.cuts), "hours": round(sum(c.duration for c in result.cuts) / 3600, 4),
            "speakers": len({c.supervisions[0].speaker for c in result.cuts}),
            "converted_files": len(result.conversions), "conversions": dict(sorted(conv.items()))}


def format_summary(summary: dict, rejected: list[tuple[str, str]], data_dir: Path) -> str:
    """The human-readable report printed at the end of the normalize and split stages."""
    norm = summary.get("normalize", {})
    lines = [f"kept: {norm.get('kept', 0)} utterances, {norm.get('hours', 0):.3f} h, {norm.get('speakers', 0)} speakers"]
    if "text" in summary:
        lines[0] += f"; {summary['text']['kept']} after text tokenization"
    reasons = collections.Counter(reason.split(":", 1)[0] for _, reason in rejected)
    lines.append(f"rejected: {sum(reasons.values())} (details: {data_dir / 'rejected.tsv'})")
    lines += [f"  {n:5d}  {kind}" for kind, n in reasons.most_common()]
    conversions = norm.get("conversions", {})
    lines.append(f"converted: {norm.get('converted_files', 0)} files to mono 24 kHz "
                 f"(details: {data_dir / 'conversions.tsv'})")
    lines += [f"  {n:5d}  {what}" for what, n in conversions.items()]
    if "text" in summary:
        text = summary["text"]
        unknown = text.get("unknown_symbols", {})
        lines.append(f"text: tokenizer {text['tokenizer']}, language {text['language']}, "
                     f"{sum(unknown.values())} unknown symbol(s)" + (f": {unknown}" if unknown else ""))
    if "split" in summary:
        lines.append("split: " + ", ".join(f"{k} {v['cuts']} cuts / {v['hours']:.3f} h"
                                           for k, v in summary["split"].items()))
    return "\n".join(lines)


def require_some(kept: int, total: int, rejections: list[Rejection], what: str) -> None:
    """Only a run with nothing usable fails; the message names the main reasons."""
    if kept:
        return
    if total == 0:
        raise UserError(f"no utterances found in {what}: expected audio files ({' '.join(AUDIO_EXTENSIONS)}) with "
                        "same-stem transcripts, or a metadata file of path|text lines")
    reasons = collections.Counter(r.kind for r in rejections).most_common(3)
    why = ", ".join(f"{kind} ({n})" for kind, n in reasons)
    raise UserError(f"no usable utterances in {what}: {total} found, all rejected: {why}; see rejected.tsv")


def save_cuts(cuts, path: Path) -> None:
    """Cuts (a list or a CutSet) -> a lhotse manifest, written whole (`write_whole`)."""
    write_whole(path, lambda tmp: CutSet.from_cuts(cuts).to_file(tmp), "cut manifests")


def load_cuts(path: str | Path, missing: str = "run the earlier stages of prepare.sh first") -> CutSet:
    """The cuts of a manifest, in memory. A missing file is a UserError ending in `missing` (what to do);
    so is an empty one: no stage and no training can use it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: {missing}")
    cuts = CutSet.from_file(path).to_eager()
    if len(cuts) == 0:
        raise UserError(f"{path} holds no cuts: prepare the corpus again with more data")
    return cuts


# ---------------------------------------------------------------------------------------------- stages


def stage_scan(corpus: str | Path, data_dir: Path) -> list[Entry]:
    """Custom corpus -> data_dir/manifests/entries_all.jsonl (+ scan rejections)."""
    entries, rejections = read_corpus(corpus)
    write_rejections(data_dir, "scan", rejections)
    update_summary(data_dir, "scan", {"corpus": str(corpus), "found": len(entries), "rejected": len(rejections)})
    log.info("corpus %s: %d utterances found, %d rejected while reading", corpus, len(entries), len(rejections))
    require_some(len(entries), len(entries) + len(rejections), rejections, str(corpus))
    save_entries(entries, data_dir / "manifests" / "entries_all.jsonl")
    return entries


def stage_lhotse_manifests(manifest_dir: Path, prefix: str, parts: list[str], data_dir: Path) -> list[Entry]:
    """lhotse manifests `<prefix>_{recordings,supervisions}_<part>.jsonl.gz` -> entries_<part>.jsonl."""
    from lhotse import load_manifest

    write_rejections(data_dir, "scan", [])
    update_summary(data_dir, "scan", {"corpus": str(manifest_dir), "parts": parts})
    entries = []
    for part in parts:
        found = [manifest_dir / f"{prefix}_{kind}_{part}.jsonl.gz" for kind in ("recordings", "supervisions")]
        missing = [str(p) for p in found if not p.is_file()]
        if missing:
            raise UserError(f"{', '.join(missing)} not found: prepare the lhotse manifests of part {part!r} first")
        part_entries = entries_from_manifests(load_manifest(found[0]), load_manifest(found[1]), part)
        log.info("%s %s: %d utterances", prefix, part, len(part_entries))
        save_entries(part_entries, data_dir / "manifests" / f"entries_{part}.jsonl")
        entries += part_entries
    return entries


def stage_normalize(data_dir: Path, opts: NormalizeOptions, num_jobs: int = 1) -> dict:
    """Every entries_<part>.jsonl -> cuts_<part>.jsonl.gz, conversions.tsv, rejections, summary (printed)."""
    manifests = data_dir / "manifests"
    parts = sorted(p.name[len("entries_"):-len(".jsonl")] for p in manifests.glob("entries_*.jsonl"))
    if not parts:
        raise UserError(f"no {manifests}/entries_*.jsonl: run the corpus stage of prepare.sh first")
    for stale in manifests.glob("cuts_*.jsonl.gz"):  # parts of an earlier run that are gone now
        if stale.name[len("cuts_"):-len(".jsonl.gz")] not in parts:
            stale.unlink()
    total = Normalized()
    num_entries = 0
    for part in parts:
        entries = load_entries(manifests / f"entries_{part}.jsonl")
        num_entries += len(entries)
        result = normalize_entries(entries, data_dir / "audio", opts, num_jobs)
        save_cuts(result.cuts, manifests / f"cuts_{part}.jsonl.gz")
        for name in ("cuts", "rejections", "conversions", "infos"):
            getattr(total, name).extend(getattr(result, name))
    write_text(data_dir / "conversions.tsv", "".join(f"{p}\t{d}\n" for p, d in total.conversions))
    write_rejections(data_dir, "normalize", total.rejections)
    summary = update_summary(data_dir, "normalize", normalize_summary(total))
    print(format_summary(summary, read_rejections(data_dir), data_dir))
    require_some(len(total.cuts), num_entries, total.rejections, str(data_dir / "manifests"))
    return summary
