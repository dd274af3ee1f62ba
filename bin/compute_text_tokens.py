#!/usr/bin/env python3
"""Text tokens for every cut (phonemes, ids, per-token language ids on the supervision); text the g2p
cannot handle goes to DATA/rejected.tsv; writes DATA/tokenized/text_tokenizer.json."""
import argparse
import logging
from pathlib import Path

from valle.cli import ArgumentParser, DefaultsHelpFormatter, UserError, run_main
from valle.data.tokenize import stage_text
from valle.text import INPUT_LANGUAGES
from valle.locks import folder_lock


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the recipe's data folder")
    parser.add_argument("--tokenizer", default="vallex", choices=["vallex", "espeak"],
                        help="vallex: the released checkpoint's tokenizer (fine-tuning); espeak: phonemizer phones "
                             "with a symbol table built from this corpus (training from scratch)")
    parser.add_argument("--symbols", type=Path, default=None,
                        help="espeak only: an existing unique_text_tokens.k2symbols to use (None: build the table "
                             "from this corpus)")
    parser.add_argument("--language", default="en", choices=INPUT_LANGUAGES,
                        help="language of the transcripts (mix: text carries its own [EN]..[EN] marks)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from valle.text import get_tokenizer

    if args.symbols and args.tokenizer != "espeak":
        raise UserError("--symbols is for --tokenizer espeak (the vallex vocabulary is fixed)")
    tokenizer = get_tokenizer(args.tokenizer, symbols=args.symbols) if args.symbols else get_tokenizer(args.tokenizer)
    with folder_lock(args.data_dir, "data preparation"):  # one run per data folder (prepare.sh passes its own)
        stage_text(args.data_dir, tokenizer, args.language)


if __name__ == "__main__":
    run_main(main)
