#!/usr/bin/env python3
"""Export fine-tuned weights: the released VALL-E X layout ({"model": state_dict}, for other VALL-E X tools)
or safetensors (config and tokenizer in its metadata)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from valle.cli import UserError, run_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="any checkpoint the toolkit reads (e.g. exp/nar/best-valid-loss.pt)")
    parser.add_argument("output", type=Path, help="output file: .pt for the released layout, .safetensors")
    parser.add_argument("--nhead", type=int, default=None, help="attention heads, if the checkpoint lacks them")
    args = parser.parse_args()

    from valle.models.checkpoint import export_released, export_safetensors, load_model

    if args.output.suffix not in (".pt", ".safetensors"):
        raise UserError(f"{args.output}: the output must end in .pt (released layout) or .safetensors")
    model, loaded = load_model(args.checkpoint, nhead=args.nhead)
    if args.output.suffix == ".pt":
        export_released(model, args.output)
    else:
        export_safetensors(model, args.output, tokenizer=loaded.tokenizer)
    print(args.output)


if __name__ == "__main__":
    run_main(main)
