#!/usr/bin/env python3
"""Evaluate checkpoints: does the model speak the text, in the speaker's voice, without noise?
Writes report.html, report.json, utterances.tsv, metrics.png and the wavs."""

from valle.commands.evaluate import entry

if __name__ == "__main__":
    entry()
