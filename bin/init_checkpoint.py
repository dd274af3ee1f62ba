#!/usr/bin/env python3
"""Write a randomly initialised VALL-E X checkpoint of any size (tiny demos, training from scratch)."""

from valle.commands.init_checkpoint import entry

if __name__ == "__main__":
    entry()
