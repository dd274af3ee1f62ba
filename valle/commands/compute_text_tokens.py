"""Text tokens for every cut (phonemes, ids, per-token language ids on the supervision); text the g2p
cannot handle goes to DATA/rejected.tsv; writes DATA/tokenized/text_tokenizer.json. Skipped when it finished
before with the same options (DATA/.text.done; valle.data.stages)."""

from __future__ import annotations

import argparse
import logging

from valle.cli import ArgumentParser, DefaultsHelpFormatter, UserError
from valle.data.options import FIELDS, add_option, options_of
from valle.data.stages import run_stages, stage_run
from valle.text import INPUT_LANGUAGES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    add_option(parser, "data_dir")
    add_option(parser, "tokenizer")
    add_option(parser, "symbols", default=None)  # None: build the table from this corpus
    # unlike a recipe, this also takes mixed-language text that carries its own marks
    add_option(parser, "language", choices=INPUT_LANGUAGES,
               help=FIELDS["language"].metadata["help"] + "; mix: the text carries its own [EN]..[EN] marks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.symbols and args.tokenizer != "espeak":
        raise UserError("--symbols is for --tokenizer espeak (the vallex vocabulary is fixed)")
    # one run per data folder (prepare.sh passes its own lock)
    run_stages(args.data_dir, [stage_run("text", args.data_dir, options_of(args))])
