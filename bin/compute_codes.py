#!/usr/bin/env python3
"""Encodec 24 kHz (6 kbps, 8 codebooks, 75 frames/s) codes for every normalized cut, stored as int16 in
DATA/tokenized/codes_<part>.h5. Resumable: a rerun encodes only what is not stored yet."""
import argparse
import logging
from pathlib import Path

from valle.audio import Codec
from valle.cli import ArgumentParser, DefaultsHelpFormatter, run_main
from valle.data.tokenize import stage_codes
from valle.locks import folder_lock


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the recipe's data folder")
    parser.add_argument("--codec-weights", default="pretrained",
                        help="pretrained (downloaded once into the torch hub cache), random (tests/offline demo only: "
                             "codes are meaningless), or the path of encodec_24khz-d7cc33bc.th")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-seconds", type=float, default=0.0,
                        help="seconds of padded audio per Encodec batch; 0: 120 on a GPU (more is faster, needs more "
                             "memory), 15 on a CPU (batching does not help there)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with folder_lock(args.data_dir, "data preparation"):  # one run per data folder (prepare.sh passes its own)
        codec = Codec.from_weights(args.codec_weights, device=args.device, max_batch_seconds=args.batch_seconds)
        stage_codes(args.data_dir, codec)


if __name__ == "__main__":
    run_main(main)
