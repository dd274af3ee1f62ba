"""Write the prepared splits (DATA/tokenized/cuts_{train,dev,test}.jsonl.gz with their HDF5 codes) as lhotse Shar
shards in DATA/shar/<split>/: cuts, codes as numpy arrays, text tokens (on the cuts), and optionally the audio as
FLAC. Train from them with --shar-dir DATA/shar."""

from __future__ import annotations

import argparse
import logging

from valle.cli import ArgumentParser, DefaultsHelpFormatter
from valle.data.options import add_option
from valle.errors import UserError
from valle.locks import folder_lock


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    for name in ("data_dir", "shar_shard_size", "shar_audio"):
        add_option(parser, name)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from valle.data.shar import export_shar

    if args.shar_shard_size < 1:
        raise UserError(f"--shar-shard-size {args.shar_shard_size}: use 1 or more cuts per shard")
    with folder_lock(args.data_dir, "data preparation"):  # one run per data folder (prepare.sh passes its own)
        written = export_shar(args.data_dir / "tokenized", args.data_dir / "shar", args.shar_shard_size,
                              audio=args.shar_audio == "flac")
    for split, info in written.items():
        print(f"shar {split}: {info['shards']} shard(s), {info['bytes'] / 1e6:.1f} MB in "
              f"{args.data_dir / 'shar' / split}")
