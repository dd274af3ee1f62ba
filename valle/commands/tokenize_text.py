"""Show how a text tokenizer reads text: one JSON object {"phonemes", "ids", "languages"} per text.

  valle tokenize-text --language en --text "Hello world."
  valle tokenize-text --input texts.tsv          # lines LANG<TAB>TEXT, LANG in en/zh/ja/mix
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from valle.cli import ArgumentParser, UserError
from valle.text import INPUT_LANGUAGES, TOKENIZER_NAMES, get_tokenizer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", choices=TOKENIZER_NAMES, default="vallex",
                   help="vallex: the released checkpoint's tokenizer; espeak: espeak-ng phones (default: vallex)")
    p.add_argument("--language", choices=INPUT_LANGUAGES, default="en",
                   help="language of --text; mix: the text carries marks like [EN]..[EN][ZH]..[ZH] (default: en)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to tokenize")
    src.add_argument("--input", type=Path, help="a UTF-8 file of lines LANG<TAB>TEXT; one JSON line each, in order")
    p.add_argument("--symbols", type=Path, default=None,
                   help="espeak only: unique_text_tokens.k2symbols to use (default: build one from the given texts)")
    return p.parse_args(argv)


def read_input(path: Path) -> list[tuple[str, str]]:
    """Lines `LANG<TAB>TEXT` -> [(lang, text)]; blank lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; pass --input FILE with lines LANG<TAB>TEXT") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 ({e}); convert it, e.g. iconv -t utf-8") from None
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        lang, tab, text = line.partition("\t")
        if not tab:
            raise UserError(f"{path}:{n}: expected LANG<TAB>TEXT, got {line!r}")
        if lang not in INPUT_LANGUAGES:
            raise UserError(f"{path}:{n}: language {lang!r} is not one of {', '.join(INPUT_LANGUAGES)}")
        items.append((lang, text))
    return items


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.symbols is not None and args.tokenizer != "espeak":
        raise UserError("--symbols is for --tokenizer espeak only")
    items = read_input(args.input) if args.input else [(args.language, args.text)]
    tokenizer = get_tokenizer(args.tokenizer, symbols=args.symbols)
    if args.tokenizer == "espeak" and args.symbols is None:
        from valle.text.espeak import phonemize

        tokenizer.build_vocab(phonemize(text, lang)[0] for lang, text in items)
    for lang, text in items:
        t = tokenizer.encode(text, lang)
        print(json.dumps({"phonemes": t.phonemes, "ids": t.ids, "languages": t.languages}, ensure_ascii=False))
    if tokenizer.unknown_counts:
        counts = ", ".join(f"{s!r} x{n}" for s, n in tokenizer.unknown_counts.most_common())
        print(f"note: symbols not in the vocabulary (id {tokenizer.unk_id}): {counts}", file=sys.stderr)
