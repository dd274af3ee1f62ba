"""Export fine-tuned weights: the released VALL-E X layout ({"model": state_dict}, for other VALL-E X tools)
or safetensors (config and tokenizer in its metadata).

With --adapter, the adapters (one per half) are merged into the base checkpoint first: the output is a full
model. Given an adapter file alone, it is written again without its training state (e.g. as .safetensors)."""

from __future__ import annotations

import sys
from pathlib import Path

from valle.cli import ArgumentParser, UserError


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="any checkpoint the toolkit reads (e.g. exp/nar/best-valid-loss.pt), "
                                           "'vallex' for the released one, or an adapter file")
    parser.add_argument("output", type=Path, help="output file: .pt for the released layout, .safetensors")
    parser.add_argument("--nhead", type=int, default=None, help="attention heads, if the checkpoint lacks them")
    parser.add_argument("--adapter", nargs="+", default=None, metavar="FILE",
                        help="adapter files (e.g. exp/ar/best-valid-loss.pt exp/nar/best-valid-loss.pt) to merge "
                             "into the checkpoint, which must be the base they were trained on")
    args = parser.parse_args(argv)

    from valle.models.checkpoint import (
        export_released,
        export_safetensors,
        is_adapter_file,
        load_adapter,
        load_model,
        merge_adapter_files,
        resolve_checkpoint,
        save_adapter,
    )

    if args.output.suffix not in (".pt", ".safetensors"):
        raise UserError(f"{args.output}: the output must end in .pt (released layout) or .safetensors")
    warn_unbeaten([args.checkpoint, *(args.adapter or ())])
    if args.adapter is None and is_adapter_file(resolve_checkpoint(args.checkpoint)):
        a = load_adapter(args.checkpoint)
        save_adapter(args.output, a.spec, a.weights, a.base, tokenizer=a.tokenizer)
        print(args.output)
        return
    model, loaded = load_model(args.checkpoint, nhead=args.nhead)
    tokenizer = loaded.tokenizer
    if args.adapter:
        from valle.inference import checkpoint_tokenizer

        merged = merge_adapter_files(model, args.adapter, base_name=args.checkpoint)
        tokenizer = checkpoint_tokenizer(tokenizer, merged, where=args.checkpoint).to_dict()
    if args.output.suffix == ".pt":
        export_released(model, args.output)
    else:
        export_safetensors(model, args.output, tokenizer=tokenizer)
    print(args.output)


def warn_unbeaten(files: list[str]) -> None:
    """Before exporting: a file of a run whose probe says fine-tuning did not beat its start is named."""
    from valle.training.run_folder import unbeaten_verdict

    for folder in dict.fromkeys(Path(f).parent for f in files if f != "vallex"):
        line = unbeaten_verdict(folder)
        if line:
            print(f"warning: {folder}: {line}; exporting it anyway", file=sys.stderr)
