"""Encodec 24 kHz (6 kbps, 8 codebooks, 75 frames/s) codes for every normalized cut, stored as int16 in
DATA/tokenized/codes_<part>.h5. Resumable: a rerun encodes only what is not stored yet.

Sharded: --num-workers N processes, each encoding its own shard (codes_<part>.<k>-of-<N>.h5 + a .done marker);
under torchrun (--nproc-per-node G, --nnodes) every rank runs N shards on its own GPU and rank 0 writes the
manifests once every shard is done. The codes are those of one process."""

from __future__ import annotations

import argparse
import contextlib
import logging

from valle.cli import ArgumentParser, DefaultsHelpFormatter, run_main
from valle.data.options import add_option
from valle.errors import UserError
from valle.locks import folder_lock


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    for name in ("data_dir", "codec_weights", "device", "batch_seconds", "num_workers"):
        add_option(parser, name)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from valle.audio import Codec
    from valle.data.pipeline import stage_codes
    from valle.device import resolve_device
    from valle.training.distributed import dist_env

    if args.num_workers < 1:
        raise UserError(f"--num-workers {args.num_workers}: use 1 or more processes")
    me = dist_env()
    device = resolve_device(args.device)
    if device == "cuda" and me.world_size > 1:
        device = f"cuda:{me.local_rank}"  # torchrun: one GPU per rank
    # One run per data folder (prepare.sh passes its own lock). The ranks of one torchrun are one run: they work
    # on shards of their own, and only a single process takes the lock.
    lock = folder_lock(args.data_dir, "data preparation") if me.world_size == 1 else contextlib.nullcontext()
    with lock:
        codec = Codec.from_weights(args.codec_weights, device=device, max_batch_seconds=args.batch_seconds)
        stage_codes(args.data_dir, codec, args.num_workers, me.rank, me.world_size)


def entry() -> None:
    run_main(lambda: main())
