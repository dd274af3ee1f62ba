"""Sources: where utterances come from, read into `Entry` rows (audio path, text, speaker) before any audio is checked.

- the user's own recordings (`read_corpus`): a folder of audio files with same-stem transcripts (`scan_folder`),
  or a metadata file of `path|text[|speaker]` lines, LJSpeech `id|text|normalized` too (`read_metadata`);
- a LibriTTS tree (`read_libritts`): <part>/<speaker>/<chapter>/<utterance>.wav with its .normalized.txt.
What cannot be read becomes a `Rejection` with its reason; every file of the corpus is either an entry, a
rejection, or the transcript or table of one. The audio itself is checked by the normalize stage. The rows are
stored as DATA/manifests/entries_<part>.jsonl.
"""

from __future__ import annotations

import collections
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from valle.audio import AUDIO_EXTENSIONS
from valle.data.files import write_text
from valle.data.rejections import Rejection
from valle.errors import UserError

TRANSCRIPT_SUFFIXES = (".normalized.txt", ".txt", ".lab")  # preferred first


@dataclass
class Entry:
    """One utterance as found in the corpus, before its audio was checked."""

    id: str
    audio: str  # absolute path of the audio file
    text: str
    speaker: str
    part: str = "all"  # corpus part (LibriTTS: train-clean-100, dev-clean, ...)


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


class Deduplicator:
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
            skipped.append(Rejection(folder, "folder reached twice",
                                     f"the same folder as {seen[stat.st_dev, stat.st_ino]} "
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
    entries, dedup = [], Deduplicator()
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
        return (f"{len(fields)} '|'-separated fields where this file's lines have {layout}: "
                f"is '|' part of the text? {fix}")
    if len(fields) == 3 and Path(fields[0]).suffix and not looks_like_speaker(fields[2]):
        return f"the third field {fields[2][:40]!r} does not look like a speaker name: is '|' part of the text? {fix}"
    return None


def read_metadata(meta: Path) -> tuple[list[Entry], list[Rejection]]:
    """Lines `path|text` or `path|text|speaker` (paths relative to the metadata file's folder), or LJSpeech
    `id|text|normalized` (an id without extension -> wavs/ID.wav; the normalized text is used). A line whose
    fields are ambiguous (`_ambiguity`: a '|' inside the text) is rejected, never cut."""
    base = meta.parent
    entries, dedup = [], Deduplicator()
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


LIBRITTS_TABLES = (".trans.tsv", ".book.tsv")  # a chapter's transcripts and book text: the .txt files say the same


def read_libritts(part_dir: Path, dedup: Deduplicator | None = None) -> tuple[list[Entry], list[Rejection]]:
    """One LibriTTS part: every <speaker>_<chapter>_<para>_<sentence>.wav with its .normalized.txt (speaker = the
    id's first field); a wav without it, a transcript without its wav, any other file: a `Rejection`."""
    files, rejections = walk_files(part_dir)
    wavs = {p for p in files if p.suffix == ".wav"}
    entries, dedup = [], dedup or Deduplicator()
    for path in files:
        if path.name.endswith(LIBRITTS_TABLES):
            continue
        if path.name.endswith((".normalized.txt", ".original.txt")):
            if path.with_name(path.name.split(".")[0] + ".wav") not in wavs:
                rejections.append(Rejection(str(path), "transcript without audio", "no .wav with this stem"))
            continue
        if path.suffix != ".wav":
            rejections.append(Rejection(str(path), "unsupported extension",
                                        f"{path.suffix or 'no extension'}; a LibriTTS part holds .wav files"))
            continue
        transcript = path.with_suffix(".normalized.txt")
        if not transcript.is_file():
            rejections.append(Rejection(str(path), "missing transcript", f"no {transcript.name} next to it"))
            continue
        text, bad = _read_text(transcript, str(path))
        bad = bad or dedup.check(path.stem, str(path))
        if bad:
            rejections.append(bad)
            continue
        entries.append(Entry(path.stem, str(path.resolve()), text, path.stem.split("_")[0], part_dir.name))
    return entries, rejections


def save_entries(entries: list[Entry], path: Path) -> None:
    write_text(path, "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in entries), "the corpus entries")


def load_entries(path: Path) -> list[Entry]:
    if not path.is_file():
        raise UserError(f"{path} not found: run the corpus stage of prepare.sh first")
    return [Entry(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
