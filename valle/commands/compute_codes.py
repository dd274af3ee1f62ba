"""Encodec 24 kHz (6 kbps, 8 codebooks, 75 frames/s) codes for every normalized cut, stored as int16 in
DATA/tokenized/codes_<part>.h5. Resumable: a rerun encodes only what is not stored yet. Skipped when it finished
before with the same --codec-weights (DATA/.codes.done; valle.data.stages).

Sharded: --num-workers N processes, each encoding its own shard (codes_<part>.<k>-of-<N>.h5 + a .done marker);
under torchrun (--nproc-per-node G, --nnodes) every rank runs N shards on its own GPU and rank 0 writes the
manifests once every shard is done. The codes are those of one process."""

from __future__ import annotations

import argparse
import logging

from valle.cli import ArgumentParser, DefaultsHelpFormatter
from valle.data.options import add_option, options_of
from valle.data.stages import run_stages, stage_run
from valle.ranks import dist_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    for name in ("data_dir", "codec_weights", "device", "batch_seconds", "num_workers"):
        add_option(parser, name)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run = stage_run("codes", args.data_dir, options_of(args))
    if not dist_env().is_main:
        # torchrun's other ranks: their shards only. Rank 0 holds the folder's lock and the stage marker (one run
        # per data folder; prepare.sh passes its own lock) and writes the manifests.
        run.work()
    else:
        run_stages(args.data_dir, [run])
