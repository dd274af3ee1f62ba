"""Normalisation: every `Entry`'s audio checked (readable, long enough, not silence) and made mono 24 kHz; one
MonoCut (one supervision) per kept utterance, a `Rejection` for every other, and what was converted."""

from __future__ import annotations

import collections
import io
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
import torch
from lhotse import MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource
from tqdm import tqdm

from valle.audio import SAMPLE_RATE, AudioError, audio_info, level_dbfs, load_audio
from valle.codec import HOP_LENGTH, code_frames
from valle.data.check import loudness_lufs, to_loudness
from valle.data.files import write_whole
from valle.data.options import PrepareOptions
from valle.data.rejections import Rejection
from valle.data.sources import Entry
from valle.device import torch_threads
from valle.storage import check_free_space, remove_partials


@dataclass
class NormalizeOptions:
    """What a file must be to be kept (valle.data.options holds the defaults and their help)."""

    min_duration: float = PrepareOptions.min_duration  # seconds
    max_duration: float = PrepareOptions.max_duration  # seconds
    silence_db: float = PrepareOptions.silence_db  # RMS level in dBFS below which a file counts as silence
    loudness_normalize: bool = PrepareOptions.loudness_normalize  # every file to check.TARGET_LUFS (copied)

    @classmethod
    def of(cls, opts: PrepareOptions) -> NormalizeOptions:
        return cls(opts.min_duration, opts.max_duration, opts.silence_db, opts.loudness_normalize)


@dataclass
class Normalized:
    """What `normalize_entries` returns: the kept cuts and the report."""

    cuts: list[MonoCut] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    conversions: list[tuple[str, str]] = field(default_factory=list)  # (path, AudioInfo.describe() + loudness)
    infos: list[dict] = field(default_factory=list)  # original rate/channels/format of every kept file


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
    custom = {"source": entry.audio}
    if opts.loudness_normalize:
        normalized, before = to_loudness(wave.numpy())
        wave = torch.from_numpy(normalized)
        custom["loudness"] = f"loudness {before:.1f} -> {loudness_lufs(normalized):.1f} LUFS"
    if _needs_copy(info) or opts.loudness_normalize:
        path = audio_dir / f"{entry.id}.flac"
        flac = io.BytesIO()  # encoded in memory: libsndfile reports a full disk only as "System error"
        sf.write(flac, wave.numpy(), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        write_whole(path, lambda tmp: tmp.write_bytes(flac.getbuffer()), "normalised audio")
    num_samples = wave.shape[0]
    recording = Recording(id=entry.id, sources=[AudioSource(type="file", channels=[0], source=str(path))],
                          sampling_rate=SAMPLE_RATE, num_samples=num_samples, duration=num_samples / SAMPLE_RATE)
    sup = SupervisionSegment(id=entry.id, recording_id=entry.id, start=0.0, duration=recording.duration, channel=0,
                             text=entry.text, speaker=entry.speaker, custom=custom)
    cut = MonoCut(id=entry.id, start=0.0, duration=recording.duration, channel=0, recording=recording,
                  supervisions=[sup])
    return cut, None, info


# torch threads of every file's resampling, in the stage's process or in a worker: the output does not depend on
# --num-jobs (float results depend on the thread count)
NORMALIZE_THREADS = 1


def _init_worker() -> None:
    torch.set_num_threads(NORMALIZE_THREADS)


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
            total += max(0, round(info.duration * SAMPLE_RATE) * 2
                         - (earlier.stat().st_size if earlier.is_file() else 0))
    return total


def normalize_entries(entries: list[Entry], audio_dir: Path, opts: NormalizeOptions, num_jobs: int = 1) -> Normalized:
    """Validate and convert every entry (in parallel with num_jobs > 1), with a tqdm progress bar. Free space for
    the converted copies is checked first."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    remove_partials(audio_dir)  # left by a killed run
    check_free_space(audio_dir, copies_size(entries, audio_dir, opts), "the normalised audio (mono 24 kHz FLAC copies)",
                     "free space or use a --data-dir on a larger disk, then run the normalize stage again")
    jobs = [(e, audio_dir, opts) for e in entries]
    result = Normalized()
    if num_jobs > 1:
        with ProcessPoolExecutor(num_jobs, initializer=_init_worker) as pool:
            outputs = list(tqdm(pool.map(_normalize_star, jobs, chunksize=8), total=len(jobs), desc="normalize"))
    else:
        with torch_threads(NORMALIZE_THREADS):
            outputs = [normalize_entry(*job) for job in tqdm(jobs, desc="normalize")]
    for entry, (cut, rejection, info) in zip(entries, outputs):
        if rejection is not None:
            result.rejections.append(rejection)
            continue
        result.cuts.append(cut)
        result.infos.append({"rate": info.sample_rate, "channels": info.channels, "kind": info.kind})
        if _needs_copy(info) or opts.loudness_normalize:
            loudness = cut.supervisions[0].custom.get("loudness")
            done = ([info.describe()] if _needs_copy(info) else []) + ([loudness] if loudness else [])
            result.conversions.append((entry.audio, "; ".join(done)))
    return result


def normalize_summary(result: Normalized) -> dict:
    """Kept / hours / speakers, how many files are referenced where they are and how many converted (counts by
    kind)."""
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
            "referenced_files": len(result.cuts) - len(result.conversions),  # mono 24 kHz WAV/FLAC, used where they are
            "converted_files": len(result.conversions), "conversions": dict(sorted(conv.items()))}
