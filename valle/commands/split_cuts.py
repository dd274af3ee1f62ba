"""Write DATA/tokenized/cuts_{train,dev,test}.jsonl.gz. A custom corpus is split at random (seeded, so the
same data always splits the same way; a tiny corpus still gets a dev cut); LibriTTS dev-*/test-* parts are
the dev/test sets. Held-out speakers go to test. Prints the final summary. Skipped when it finished before with
the same options (DATA/.split.done; valle.data.stages)."""

from __future__ import annotations

import argparse
import logging

from valle.cli import ArgumentParser, DefaultsHelpFormatter, run_main
from valle.data.options import add_option
from valle.data.stages import StageRun, run_stages, signature


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    for name in ("data_dir", "dev_ratio", "test_ratio", "seed", "heldout_speakers"):
        add_option(parser, name)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def split():
        from valle.data.pipeline import stage_split

        stage_split(args.data_dir, args.dev_ratio, args.test_ratio, args.seed, args.heldout_speakers.split())
    # one run per data folder (prepare.sh passes its own lock)
    run_stages(args.data_dir, [StageRun("split", signature("split", vars(args)), split)])


def entry() -> None:
    run_main(lambda: main())
