"""Check a prepared corpus before training (the check stage of every egs/*/prepare.sh, after normalize): every
file measured and flagged where it looks wrong (clipping, noise, loudness, edge silence, speaking rate, a
transcript an offline ASR disagrees with, another voice, duplicates), minutes of usable speech per speaker, and a
one-line verdict: DATA/check.html, DATA/check.json. Flagged files are listed, not removed, unless --drop-flagged.
Skipped when it finished before with the same options (DATA/.check.done; valle.data.stages); --verdict prints
the verdict of the last check without checking again.
"""

from __future__ import annotations

import argparse
import logging

from valle.cli import ArgumentParser, DefaultsHelpFormatter
from valle.data.options import add_option, options_of
from valle.data.stages import run_stages, stage_run
from valle.errors import UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    for name in ("data_dir", "language", "check_asr", "drop_flagged"):
        add_option(parser, name)
    parser.add_argument("--verdict", action="store_true", help="print the last check's verdict line and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.verdict:
        from valle.data.check import REPORT_JSON, flagged_rows

        line, _ = flagged_rows(args.data_dir)
        if not line:
            raise UserError(f"no {args.data_dir / REPORT_JSON}: run the check stage first")
        print(line)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # one run per data folder (prepare.sh passes its own lock)
    run_stages(args.data_dir, [stage_run("check", args.data_dir, options_of(args))])
