#!/usr/bin/env python3
"""Corpus -> entries -> validated mono 24 kHz cuts (the first stages of every egs/*/prepare.sh).

  prepare_corpus.py scan --corpus DIR_OR_METADATA --data-dir data       your own recordings
  prepare_corpus.py download-libritts --download-dir download --parts dev-clean ...
  prepare_corpus.py libritts --corpus-dir download/LibriTTS --parts dev-clean ... --data-dir data
  prepare_corpus.py normalize --data-dir data [--min-duration 0.5 --max-duration 20 --silence-db -60]
"""
import argparse
import logging
from pathlib import Path

from valle.cli import ArgumentParser, DefaultsHelpFormatter, run_main
from valle.data import corpus
from valle.locks import folder_lock

LIBRITTS_PARTS = "dev-clean test-clean train-clean-100"


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="read a folder or metadata file of your own recordings",
                          formatter_class=DefaultsHelpFormatter)
    scan.add_argument("--corpus", required=True, type=Path,
                      help="folder of audio + same-stem .txt/.lab/.normalized.txt transcripts (speaker = parent "
                           "folder), or a metadata file of path|text[|speaker] lines (LJSpeech id|text|normalized too)")

    download = sub.add_parser("download-libritts", help="download LibriTTS parts with lhotse (needs internet)",
                              formatter_class=DefaultsHelpFormatter)
    download.add_argument("--download-dir", type=Path, default=Path("download"), help="where LibriTTS/ is unpacked")
    download.add_argument("--parts", nargs="+", default=LIBRITTS_PARTS.split(), help="LibriTTS parts to download")

    libritts = sub.add_parser("libritts", help="lhotse LibriTTS manifests -> entries", formatter_class=DefaultsHelpFormatter)
    libritts.add_argument("--corpus-dir", type=Path, default=Path("download/LibriTTS"), help="the unpacked LibriTTS folder")
    libritts.add_argument("--parts", nargs="+", default=LIBRITTS_PARTS.split(),
                          help="parts to prepare (dev-* become the dev set, test-* the test set, the rest train)")
    libritts.add_argument("--num-jobs", type=int, default=4, help="lhotse manifest workers")

    normalize = sub.add_parser("normalize", help="check, downmix and resample every file -> cuts + reports",
                               formatter_class=DefaultsHelpFormatter)
    defaults = corpus.NormalizeOptions()  # the one place of these defaults
    normalize.add_argument("--min-duration", type=float, default=defaults.min_duration,
                           help="reject files shorter than this (seconds)")
    normalize.add_argument("--max-duration", type=float, default=defaults.max_duration,
                           help="reject files longer than this (seconds)")
    normalize.add_argument("--silence-db", type=float, default=defaults.silence_db,
                           help="reject files whose RMS level is below this many dBFS (silence)")
    normalize.add_argument("--num-jobs", type=int, default=1, help="parallel worker processes")

    for p in (scan, libritts, normalize):
        p.add_argument("--data-dir", type=Path, default=Path("data"), help="the recipe's data folder")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "download-libritts":
        from lhotse.recipes import download_libritts

        download_libritts(args.download_dir, dataset_parts=args.parts)
        return
    with folder_lock(args.data_dir, "data preparation"):  # one run per data folder (prepare.sh passes its own)
        if args.command == "scan":
            corpus.stage_scan(args.corpus, args.data_dir)
        elif args.command == "libritts":
            from lhotse.recipes import prepare_libritts

            lhotse_dir = args.data_dir / "manifests" / "lhotse"
            prepare_libritts(args.corpus_dir, dataset_parts=args.parts, output_dir=lhotse_dir, num_jobs=args.num_jobs)
            corpus.stage_lhotse_manifests(lhotse_dir, "libritts", args.parts, args.data_dir)
        else:
            opts = corpus.NormalizeOptions(args.min_duration, args.max_duration, args.silence_db)
            corpus.stage_normalize(args.data_dir, opts, args.num_jobs)


if __name__ == "__main__":
    run_main(main)
