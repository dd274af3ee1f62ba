"""Corpus -> entries -> validated mono 24 kHz cuts (the first stages of every egs/*/prepare.sh).

  prepare_corpus.py scan --corpus DIR_OR_METADATA --data-dir data       your own recordings
  prepare_corpus.py download-libritts --download-dir download --parts dev-clean ...
  prepare_corpus.py libritts --corpus-dir download/LibriTTS --parts dev-clean ... --data-dir data
  prepare_corpus.py normalize --data-dir data [--min-duration 0.5 --max-duration 20 --silence-db -60]
A stage that finished before with the same options is skipped (DATA/.<stage>.done; valle.data.stages).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from valle.cli import ArgumentParser, DefaultsHelpFormatter
from valle.data import stages
from valle.data.options import PrepareOptions, add_option, options_of
from valle.data.stages import StageRun, run_stages, stage_run
from valle.errors import UserError

LIBRITTS_PARTS = PrepareOptions.dataset_parts.split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="read a folder or metadata file of your own recordings",
                          formatter_class=DefaultsHelpFormatter)
    add_option(scan, "corpus", required=True, default=None)

    download = sub.add_parser("download-libritts", help="download LibriTTS parts with lhotse (needs internet)",
                              formatter_class=DefaultsHelpFormatter)
    add_option(download, "download_dir")
    download.add_argument("--parts", nargs="+", default=LIBRITTS_PARTS,
                          help="LibriTTS parts to download (those already in DOWNLOAD_DIR/LibriTTS are skipped)")

    libritts = sub.add_parser("libritts", help="read LibriTTS parts -> entries (every file accounted for)",
                              formatter_class=DefaultsHelpFormatter)
    libritts.add_argument("--corpus-dir", type=Path, default=Path(PrepareOptions.download_dir) / "LibriTTS",
                          help="the unpacked LibriTTS folder")
    libritts.add_argument("--parts", nargs="+", default=LIBRITTS_PARTS,
                          help="parts to prepare (dev-* become the dev set, test-* the test set, the rest train)")

    normalize = sub.add_parser("normalize", help="check, downmix and resample every file -> cuts + reports",
                               formatter_class=DefaultsHelpFormatter)
    for name in ("min_duration", "max_duration", "silence_db", "loudness_normalize", "num_jobs"):
        add_option(normalize, name)

    for p in (scan, libritts, normalize):
        add_option(p, "data_dir")
    return parser.parse_args(argv)


def download(download_dir: Path, parts: list[str]) -> None:
    """The LibriTTS parts not already unpacked in download_dir/LibriTTS (lhotse; needs internet)."""
    missing = [part for part in parts if not (download_dir / "LibriTTS" / part).is_dir()]
    if not missing:
        print(f"every part is in {download_dir / 'LibriTTS'}, skipping", flush=True)
        return
    print(f"downloading LibriTTS {' '.join(missing)} -> {download_dir / 'LibriTTS'}", flush=True)
    from lhotse.recipes import download_libritts

    download_libritts(download_dir, dataset_parts=missing)


def subcommand_run(args: argparse.Namespace) -> StageRun:
    """The stage a subcommand runs, with its signature; its inputs are checked before anything changes. The
    work imports torch only when it runs: a skipped stage costs a fraction of a second."""
    if args.command == "scan":
        if not Path(args.corpus).exists():
            raise UserError(f"--corpus {args.corpus}: no such folder or metadata file "
                            f"(nothing in {args.data_dir} was changed)")
        return stage_run("scan", args.data_dir, options_of(args))
    if args.command == "libritts":
        missing = [part for part in args.parts if not (args.corpus_dir / part).is_dir()]
        if missing:
            raise UserError(f"{args.corpus_dir / missing[0]} not found: run stage -1 (download) or pass the "
                            f"--download-dir that holds LibriTTS/ (nothing in {args.data_dir} was changed)")
        return StageRun("scan", stages.libritts_signature(args.corpus_dir.parent, args.parts),
                        lambda: scan_libritts(args), f"LibriTTS {' '.join(args.parts)}")
    return stage_run("normalize", args.data_dir, options_of(args))


def scan_libritts(args: argparse.Namespace) -> None:
    from valle.data import pipeline  # imports torch: only when the stage runs

    pipeline.stage_scan_libritts(args.corpus_dir, args.parts, args.data_dir)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "download-libritts":
        download(args.download_dir, args.parts)
    else:  # one run per data folder (prepare.sh passes its own lock)
        run_stages(args.data_dir, [subcommand_run(args)])
