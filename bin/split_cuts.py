#!/usr/bin/env python3
"""Write DATA/tokenized/cuts_{train,dev,test}.jsonl.gz. A custom corpus is split at random (seeded, so the
same data always splits the same way; a tiny corpus still gets a dev cut); LibriTTS dev-*/test-* parts are
the dev/test sets. Held-out speakers go to test. Prints the final summary."""

from valle.commands.split_cuts import entry

if __name__ == "__main__":
    entry()
