#!/usr/bin/env python3
"""Make a voice preset .npz (the released VALL-E X format) from a recording and its transcript."""

from valle.commands.make_prompt import entry

if __name__ == "__main__":
    entry()
