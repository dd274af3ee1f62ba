#!/usr/bin/env python3
"""Show how a text tokenizer reads text: one JSON object {"phonemes", "ids", "languages"} per text.

  python bin/tokenize_text.py --language en --text "Hello world."
  python bin/tokenize_text.py --input texts.tsv          # lines LANG<TAB>TEXT, LANG in en/zh/ja/mix
"""

from valle.commands.tokenize_text import entry

if __name__ == "__main__":
    entry()
