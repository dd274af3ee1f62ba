"""What every command shares: user errors as one line, strict booleans, the model and sampling flags."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from valle.config import ENGINES, MAX_FRAMES, Sampling
from valle.errors import UserError


def run_main(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point; a UserError becomes `error: <message>` on stderr and exit code 2."""
    try:
        code = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows each flag's default, and the description as written."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line and a pointer to --help, not the whole usage first. Flags must be
    spelled out: a prefix such as --max-step (for --max-steps) is an error, not a guess."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_model_arguments(parser: argparse.ArgumentParser, checkpoint_help: str) -> argparse._ArgumentGroup:
    """The "model" group of the commands that speak (valle infer, valle serve): --checkpoint, --nhead, --device,
    --precision, --engine, --onnx; returns the group for a command's own model flags."""
    m = parser.add_argument_group("model")
    m.add_argument("--checkpoint", default="vallex", help=checkpoint_help)
    m.add_argument("--nhead", type=int, default=None,
                   help="attention heads; the released file does not store it [checkpoint's config, else 16]")
    m.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto [auto]")
    m.add_argument("--precision", default="fp32",
                   help="fp32, bf16, fp16 (weights and activations; bf16/fp16 halve memory and speed up GPUs) or int8 "
                        "(CPU: weight-only int8 linears, a quarter of their memory; speed and quality cost in "
                        "docs/benchmarks.md#precision); the codec stays float32 [fp32]")
    add_engine_arguments(m)
    return m


def add_engine_arguments(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """--engine and --onnx, shared by the commands that speak and valle evaluate."""
    group.add_argument("--engine", choices=ENGINES, default="torch",
                       help="what runs the model: torch, or onnxruntime on the CPU with the files of --onnx [torch]")
    group.add_argument("--onnx", default=None, metavar="DIR",
                       help="with --engine onnxruntime: the folder written by `valle export onnx` from --checkpoint "
                            "(and its adapters); it runs at the precision it was exported in (fp32 or int8)")


def add_sampling_arguments(parser: argparse.ArgumentParser, title: str = "sampling",
                           seed_help: str = "random seed of the sampling [0]") -> None:
    """--top-k --top-p --temperature --seed --max-frames, shared by valle infer and valle evaluate."""
    s = parser.add_argument_group(title)
    s.add_argument("--top-k", type=int, default=Sampling.top_k,
                   help=f"sample among the k most likely codes; 1 = greedy; 0 = no limit (the reference's) "
                        f"[{Sampling.top_k}]")
    s.add_argument("--top-p", type=float, default=Sampling.top_p,
                   help=f"nucleus sampling threshold in (0, 1]; 1 = off [{Sampling.top_p}]")
    s.add_argument("--temperature", type=float, default=Sampling.temperature,
                   help=f"softmax temperature, > 0 [{Sampling.temperature}]")
    s.add_argument("--seed", type=int, default=0, help=seed_help)
    s.add_argument("--max-frames", type=int, default=None,
                   help=f"stop after this many frames (75 per second; at most {MAX_FRAMES}) "
                        "[16 per text token, prompt text included]")


def sampling_from_args(a: argparse.Namespace) -> Sampling:
    """The Sampling the flags of add_sampling_arguments ask for; it checks itself (a UserError names the flag)."""
    return Sampling(top_k=a.top_k, top_p=a.top_p, temperature=a.temperature, seed=a.seed, max_frames=a.max_frames)
