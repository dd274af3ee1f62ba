#!/usr/bin/env python3
"""Export fine-tuned weights: the released VALL-E X layout or safetensors; --adapter merges
adapters into the base first."""

from valle.commands.export_checkpoint import entry

if __name__ == "__main__":
    entry()
