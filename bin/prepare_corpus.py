#!/usr/bin/env python3
"""Corpus -> entries -> validated mono 24 kHz cuts (the first stages of every egs/*/prepare.sh).

  prepare_corpus.py scan --corpus DIR_OR_METADATA --data-dir data       your own recordings
  prepare_corpus.py download-libritts --download-dir download --parts dev-clean ...
  prepare_corpus.py libritts --corpus-dir download/LibriTTS --parts dev-clean ... --data-dir data
  prepare_corpus.py normalize --data-dir data [--min-duration 0.5 --max-duration 20 --silence-db -60]
A stage that finished before with the same options is skipped (DATA/.<stage>.done; valle.data.stages).
"""

from valle.commands.prepare_corpus import entry

if __name__ == "__main__":
    entry()
