#!/usr/bin/env python3
"""Encodec 24 kHz (6 kbps, 8 codebooks, 75 frames/s) codes for every normalized cut, stored as int16 in
DATA/tokenized/codes_<part>.h5. Resumable: a rerun encodes only what is not stored yet. Skipped when it finished
before with the same --codec-weights (DATA/.codes.done; valle.data.stages)."""

from valle.commands.compute_codes import entry

if __name__ == "__main__":
    entry()
