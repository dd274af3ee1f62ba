"""Long recordings -> utterances for training: cut at pauses (silero-vad), transcribed (Whisper or pocketsphinx)
or aligned to their known text (a same-stem .txt, or --text), the target voice kept, flagged for review.

  segment.py podcast.mp3 --out data/segments --keep-speaker me.wav
  segment.py chapter1.flac --text chapter1.txt --out data/segments          (audiobook + its text)
  segment.py interview.wav --num-speakers 2 --out data/segments

Writes OUT/segments.tsv (edit text, set keep to no, run again: your edits are kept), OUT/review.html (a player
per segment), OUT/clips/*.wav, OUT/rejected.tsv and OUT/metadata.txt: the kept segments, for
`prepare_corpus.py scan --corpus OUT/metadata.txt` (egs/custom/prepare.sh --corpus OUT/metadata.txt).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from valle.cli import ArgumentParser, DefaultsHelpFormatter
from valle.data.segment.cuts import CutOptions
from valle.data.segment.pipeline import TRANSCRIBE, SegmentOptions, engine_confidences, segment_recordings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    d = SegmentOptions()
    p.add_argument("inputs", nargs="+", type=Path, help="recordings (wav, flac, mp3, ogg) or folders of them")
    p.add_argument("--out", type=Path, required=True, help="output folder (segments.tsv, review.html, clips/ ...)")
    c = p.add_argument_group("cutting")
    c.add_argument("--segment-min", type=float, default=d.cut.segment_min,
                   help="seconds; shorter pieces are merged with a neighbour, what stays shorter is flagged")
    c.add_argument("--segment-max", type=float, default=d.cut.segment_max,
                   help="seconds; longer pieces are cut at their longest pause")
    c.add_argument("--min-pause", type=float, default=d.cut.min_pause, help="seconds of silence that end a segment")
    c.add_argument("--pad", type=float, default=d.cut.pad, help="seconds of silence kept before and after the speech")
    t = p.add_argument_group("text")
    t.add_argument("--text", type=Path, default=d.text,
                   help="the known text of the (one) recording, aligned to it; default: its same-stem .txt if any")
    t.add_argument("--transcribe", choices=TRANSCRIBE, default=d.transcribe,
                   help="for recordings without text: whisper (faster-whisper), pocketsphinx (English, offline), "
                        "none, or auto (whisper if installed, else pocketsphinx)")
    t.add_argument("--whisper-model", default=d.whisper_model, help="faster-whisper model name or local folder")
    t.add_argument("--language", default=d.language, help="en, zh, ja ..., or auto (Whisper detects it)")
    t.add_argument("--min-confidence", type=float, default=d.min_confidence,
                   help="segments whose mean word probability is lower are flagged low_confidence (keep=no); "
                        f"when not given, the engine's own ({engine_confidences()})")
    v = p.add_argument_group("voices")
    v.add_argument("--keep-speaker", type=Path, default=d.keep_speaker,
                   help="a few seconds of the target voice; other voices are flagged other_speaker")
    v.add_argument("--speaker-threshold", type=float, default=d.speaker_threshold,
                   help="speaker similarity (resemblyzer cosine) below which a segment is another voice")
    v.add_argument("--num-speakers", type=int, default=d.num_speakers,
                   help="cluster each recording's voices into N speakers (speaker column <stem>_spkK); 0 = off")
    p.add_argument("--device", default=d.device, help="cpu or cuda (Whisper and the speaker encoder)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads; 1 is fastest on a small machine (the figures of docs/long-recordings.md "
                        "are measured with it): the voice detector's 32 ms steps only synchronise more threads")
    return p.parse_args(argv)


def options(a: argparse.Namespace) -> SegmentOptions:
    """The flags -> SegmentOptions, which checks them (one line naming the flag)."""
    cut = CutOptions(a.segment_min, a.segment_max, a.min_pause, a.pad)
    return SegmentOptions(cut, a.transcribe, a.whisper_model, a.language, a.keep_speaker, a.speaker_threshold,
                          a.num_speakers, a.min_confidence, a.text, a.device, a.threads)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = segment_recordings(a.inputs, a.out, options(a))
    for line in result.lines:
        print(line)
    kept = result.kept
    print(f"kept: {len(kept)} of {len(result.segments)} segments, {sum(s.seconds for s in kept) / 60:.1f} min; "
          f"set aside: {len(result.segments) - len(kept)} (details: {a.out / 'rejected.tsv'})")
    for line in result.set_aside:
        print(line)
    print(f"review: {a.out / 'review.html'}; edit {a.out / 'segments.tsv'} and run again; "
          f"then prepare with --corpus {a.out / 'metadata.txt'}")
    if not kept:
        return 1
    return 0
