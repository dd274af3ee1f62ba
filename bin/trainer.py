#!/usr/bin/env python3
"""Fine-tune (or train from scratch) the AR or NAR half of VALL-E X. Run under torchrun for several GPUs."""

from valle.commands.train import entry

if __name__ == "__main__":
    entry()
