#!/usr/bin/env python3
"""The long-recordings targets on a synthetic recording (tests/long_recording.py: espeak-ng sentences of 3 voices,
0.3-1.5 s pauses, noise and tone gaps, one interruption): boundaries, target voice, known text, pocketsphinx WER,
speed and peak memory. Speed, memory and text run the segment command itself (`python -m valle segment`,
with the command's own --threads unless --threads is given), in its own process: its wall and CPU time and its peak
RSS are the command's. Each measurement prints one JSON line with the machine. A benchmark, not a test: it asserts
nothing.

  python bench/segment.py --work /tmp/segbench                      # all: 1 h speed, 3 h memory, text, WER
  python bench/segment.py --work /tmp/segbench --only speed --seconds 600
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from long_recording import RATE, SENTENCES, VOICES, speak, write_recording, write_reference  # noqa: E402

from bench.machine import machine  # noqa: E402
from valle.data.segment.pipeline import SegmentOptions  # noqa: E402


def boundaries(truth, segments, cut) -> dict:
    """Edges within 150 ms (all, and leaving out the two inside the interruption), segments outside min/max,
    cuts inside a sentence (one shorter than the max, not overlapped), with the sentences."""
    starts, ends = np.array([s.start for s in segments]), np.array([s.end for s in segments])
    errors = [np.abs(starts - t.start).min() for t in truth] + [np.abs(ends - t.end).min() for t in truth]
    inner = {id(t) for t in truth if t.overlapped}
    clean = [np.abs(starts - t.start).min() for t in truth if id(t) not in inner or t is truth[0]]
    clean += [np.abs(ends - t.end).min() for t in truth if id(t) not in inner]
    cuts_inside = sum(t.start + 0.15 < edge < t.end - 0.15 for t in truth if not t.overlapped
                      and t.end - t.start < cut.segment_max for s in segments for edge in (s.start, s.end))
    return {"sentences": len(truth), "edges_within_150ms": round(float(np.mean(np.array(errors) <= 0.15)), 4),
            "edges_within_150ms_outside_the_overlap": round(float(np.mean(np.array(clean) <= 0.15)), 4),
            "median_edge_error_ms": round(1000 * float(np.median(errors)), 1),
            "segments": len(segments),
            "outside_min_max": sum(not cut.segment_min <= s.seconds <= cut.segment_max for s in segments),
            "cuts_inside_a_sentence": int(cuts_inside)}


def speaker_scores(truth, segments) -> dict:
    voice = {}
    for s in segments:
        t = min(truth, key=lambda t: abs(t.start - s.start))
        if not t.overlapped:
            voice[s.id] = t.voice
    kept = {s.id for s in segments if "other_speaker" not in s.flags} & set(voice)
    target = {i for i, v in voice.items() if v == 0}
    return {"precision": round(len(kept & target) / max(1, len(kept)), 4),
            "recall": round(len(kept & target) / max(1, len(target)), 4),
            "target_segments": len(target), "other_segments": len(voice) - len(target)}


def segment_command(wav: Path, out: Path, threads: int, *flags: str) -> tuple[list, list[str], dict]:
    """Run the segment command as a user does (its own process; the bench's --threads passed as its --threads)
    -> (its segments, its rejected.tsv lines, wall and CPU seconds and the peak RSS of that process)."""
    from valle.data.segment.review import read_tsv

    if (out / "segments.tsv").exists():
        (out / "segments.tsv").unlink()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "valle", "segment", str(wav), "--out", str(out),
                           "--transcribe", "none", "--threads", str(threads), *flags], stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 1):  # 1: nothing kept (no text without ASR: every segment is no_text)
        raise SystemExit(f"the segment command failed with exit code {done.returncode}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cost = {"wall_seconds": round(wall, 1), "cpu_seconds": round(after.ru_utime + after.ru_stime
                                                                  - before.ru_utime - before.ru_stime, 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024)}
    return read_tsv(out / "segments.tsv"), (out / "rejected.tsv").read_text().splitlines(), cost


def run_speed(work: Path, seconds: float, threads: int) -> dict:
    """VAD, filters, speaker scores (no ASR) on one recording of `seconds`; boundary and voice figures."""
    from valle.data.segment.cuts import CutOptions

    wav = work / f"talk_{int(seconds)}.wav"
    truth = write_recording(wav, seconds, seed=1)
    ref = write_reference(work / "ref.wav")
    segments, _, cost = segment_command(wav, work / f"out_{int(seconds)}", threads, "--pad", "0",
                                        "--keep-speaker", str(ref))
    return {"bench": "segment", "what": "VAD + filters + speaker scores, no ASR", "audio_seconds": seconds,
            "command": f"segment talk.wav --transcribe none --pad 0 --keep-speaker ref.wav --threads {threads}",
            **cost, "realtime_factor": round(seconds / cost["wall_seconds"], 1),
            "boundaries (pad 0)": boundaries(truth, segments, CutOptions(pad=0.0)),
            "target_voice (5 s reference)": speaker_scores(truth, segments)}


def run_text(work: Path, seconds: float, threads: int) -> dict:
    """A one-voice recording and its text with one sentence that is not spoken."""
    wav = work / "book.wav"
    truth = write_recording(wav, seconds, seed=2, target_share=1.0, interrupt=False)
    texts = [t.text for t in truth]
    middle = len(texts) // 2
    wav.with_suffix(".txt").write_text(" ".join(texts[:middle] + ["A sentence of the book that nobody read."]
                                                + texts[middle:]) + "\n")
    segments, rejected, cost = segment_command(wav, work / "out_book", threads, "--pad", "0", "--segment-min", "0.5")
    starts = np.array([s.start for s in segments])
    placed = [segments[int(np.abs(starts - t.start).argmin())] for t in truth]  # the nearest, then check
    errors = [max(abs(s.start - t.start), abs(s.end - t.end)) if s.original == t.text else np.inf
              for s, t in zip(placed, truth)]
    return {"bench": "segment", "what": "known text aligned", "audio_seconds": seconds, "sentences": len(truth),
            "aligned_with_the_right_text": sum(s.original == t.text for s, t in zip(placed, truth)),
            "segments": len(segments),
            "within_100ms": round(float(np.mean(np.array(errors) <= 0.1)), 4),
            "max_edge_error_ms": round(1000 * float(np.max(errors)), 1),
            "missing_reported": [line.split("not in the audio: ", 1)[1] for line in rejected
                                 if "\tnot in the audio: " in line], **cost}


def run_wer(count: int) -> dict:
    import torch

    from valle.eval.asr import error_rate, get_transcriber

    backend, _ = get_transcriber("pocketsphinx")
    refs, hyps = [], []
    for k in range(count):
        text, voice = SENTENCES[k % len(SENTENCES)], VOICES[k % len(VOICES)]
        refs.append(text)
        hyps.append(backend.transcribe(torch.from_numpy(speak(text, voice)), RATE, "en", ""))
    return {"bench": "segment", "what": "pocketsphinx WER on espeak-ng speech", "sentences": count,
            "voices": list(VOICES), "wer": round(error_rate(refs, hyps, "en"), 4), "example": [refs[0], hyps[0]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="folder for the recordings and outputs (GBs for 3 h)")
    p.add_argument("--only", choices=("speed", "memory", "text", "wer"), default=None, help="one measurement")
    p.add_argument("--seconds", type=float, default=None, help="recording length of --only speed/memory/text")
    p.add_argument("--threads", type=int, default=SegmentOptions().threads,
                   help="the segment command's --threads (default: the command's own)")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.only is None:
        for only, seconds in (("wer", None), ("text", 300), ("speed", 3600), ("memory", 3 * 3600)):
            cmd = [sys.executable, __file__, "--work", str(a.work), "--only", only, "--threads", str(a.threads)]
            subprocess.run(cmd + (["--seconds", str(seconds)] if seconds else []), check=True)
        return
    if a.only == "wer":
        line = run_wer(40)
    elif a.only == "text":
        line = run_text(a.work, a.seconds or 300, a.threads)
    else:
        line = run_speed(a.work, a.seconds or (3600 if a.only == "speed" else 3 * 3600), a.threads)
        line["what"] += " (peak memory)" if a.only == "memory" else ""
    line["machine"] = machine("cpu")
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
