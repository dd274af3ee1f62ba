#!/usr/bin/env python3
"""Draw the training curves (loss, top-10 accuracy, the evaluation probe) of every run under EXP_DIR into one PNG."""

from valle.commands.plot_curves import entry

if __name__ == "__main__":
    entry()
