#!/usr/bin/env python3
"""Write DATA/tokenized/cuts_{train,dev,test}.jsonl.gz. A custom corpus is split at random (seeded, so the
same data always splits the same way; a tiny corpus still gets a dev cut); LibriTTS dev-*/test-* parts are
the dev/test sets. Held-out speakers go to test. Prints the final summary."""
import argparse
import logging
from pathlib import Path

from valle.cli import ArgumentParser, DefaultsHelpFormatter, run_main
from valle.data.tokenize import stage_split
from valle.locks import folder_lock


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the recipe's data folder")
    parser.add_argument("--dev-ratio", type=float, default=0.05,
                        help="share of the cuts for dev when the corpus has no dev part (at least 1 cut)")
    parser.add_argument("--test-ratio", type=float, default=0.05,
                        help="share of the cuts for test when the corpus has no test part (0 for none)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the random split")
    parser.add_argument("--heldout-speakers", default="",
                        help="space-separated speakers whose cuts all go to test (unseen voices)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with folder_lock(args.data_dir, "data preparation"):  # one run per data folder (prepare.sh passes its own)
        stage_split(args.data_dir, args.dev_ratio, args.test_ratio, args.seed, args.heldout_speakers.split())


if __name__ == "__main__":
    run_main(main)
