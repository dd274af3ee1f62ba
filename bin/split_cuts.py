#!/usr/bin/env python3
"""Write DATA/tokenized/cuts_{train,dev,test}.jsonl.gz. A custom corpus is split at random (seeded, so the
same data always splits the same way; a tiny corpus still gets a dev cut); LibriTTS dev-*/test-* parts are
the dev/test sets. Held-out speakers go to test. Prints the final summary. Skipped when it finished before with
the same options (DATA/.split.done; valle.data.stages)."""

from valle.commands.split_cuts import entry

if __name__ == "__main__":
    entry()
