#!/usr/bin/env python3
"""Text tokens for every cut (phonemes, ids, per-token language ids on the supervision); text the g2p
cannot handle goes to DATA/rejected.tsv; writes DATA/tokenized/text_tokenizer.json. Skipped when it finished
before with the same options (DATA/.text.done; valle.data.stages)."""

from valle.commands.compute_text_tokens import entry

if __name__ == "__main__":
    entry()
