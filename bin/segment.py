#!/usr/bin/env python3
"""Long recordings -> reviewed utterances (segments.tsv, review.html, metadata.txt for prepare)."""

from valle.commands.segment import entry

if __name__ == "__main__":
    entry()
