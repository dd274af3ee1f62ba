"""Write a randomly initialised VALL-E X checkpoint of any size (tiny demos, training from scratch)."""

from __future__ import annotations

from pathlib import Path

from valle.cli import ArgumentParser
from valle.config import ModelConfig, add_config_arguments, given_arguments


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True, help="checkpoint path to write")
    parser.add_argument("--tokenizer", default="vallex", help="text tokenizer the model is for (vallex | espeak)")
    parser.add_argument("--tokenizer-info", type=Path, default=None,
                        help="a prepared corpus folder holding text_tokenizer.json (overrides --tokenizer)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the initial weights")
    add_config_arguments(parser, ModelConfig)
    args = parser.parse_args(argv)

    import torch

    from valle.models.checkpoint import save_checkpoint
    from valle.models.valle import VALLE
    from valle.text import get_tokenizer, load_tokenizer_info

    torch.manual_seed(args.seed)
    model = VALLE(ModelConfig(**given_arguments(args, ModelConfig)))
    tokenizer = (load_tokenizer_info(args.tokenizer_info) if args.tokenizer_info
                 else get_tokenizer(args.tokenizer).to_dict())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.output, model, tokenizer=tokenizer, train_state=None)
    print(f"{args.output}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
