#!/usr/bin/env python3
"""Write the prepared splits as lhotse Shar shards (DATA/shar/<split>/); train from them with --shar-dir."""

from valle.commands.export_shar import entry

if __name__ == "__main__":
    entry()
