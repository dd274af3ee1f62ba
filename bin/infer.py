#!/usr/bin/env python3
"""Speak text with VALL-E X: one sentence (--text) or a list (--input list.tsv --output-dir DIR)."""

from valle.commands.infer import entry

if __name__ == "__main__":
    entry()
