"""Write DATA/tokenized/cuts_{train,dev,test}.jsonl.gz. A custom corpus is split at random (seeded, so the
same data always splits the same way; a tiny corpus still gets a dev cut); LibriTTS dev-*/test-* parts are
the dev/test sets. Held-out speakers go to test. Prints the final summary. Skipped when it finished before with
the same options (DATA/.split.done; valle.data.stages)."""

from __future__ import annotations

import argparse
import logging

from valle.cli import ArgumentParser, DefaultsHelpFormatter
from valle.data.options import add_option, options_of
from valle.data.stages import run_stages, stage_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    for name in ("data_dir", "dev_ratio", "test_ratio", "seed", "heldout_speakers"):
        add_option(parser, name)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # one run per data folder (prepare.sh passes its own lock)
    run_stages(args.data_dir, [stage_run("split", args.data_dir, options_of(args))])
