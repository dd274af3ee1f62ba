"""Fine-tune (or train from scratch) the AR or NAR half of VALL-E X. Run under torchrun for several GPUs."""

from __future__ import annotations

import os
import sys

from valle.cli import ArgumentParser, run_main
from valle.config import (
    AdapterConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    add_config_arguments,
    given_arguments,
)


def parse_args(argv=None) -> tuple[ExperimentConfig, dict]:
    # a recipe's train.sh names itself (VALLE_PROG) and passes its own defaults as flags
    parser = ArgumentParser(description=__doc__, prog=os.environ.get("VALLE_PROG"))
    add_config_arguments(parser, TrainConfig)
    add_config_arguments(parser, DataConfig)
    add_config_arguments(parser, OptimConfig)
    add_config_arguments(parser, AdapterConfig)
    # Model flags default to "whatever the checkpoint has" (or ModelConfig's defaults from scratch).
    add_config_arguments(parser, ModelConfig, keep_defaults=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:  # show the values in effect: flags given before --help become defaults
        given = parser.parse_args([a for a in argv if a not in ("-h", "--help")])
        parser.set_defaults(**{k: v for k, v in vars(given).items() if v is not None})
    args = parser.parse_args(argv)
    cfg = ExperimentConfig(
        model=ModelConfig(),
        data=DataConfig(**given_arguments(args, DataConfig)),
        optim=OptimConfig(**given_arguments(args, OptimConfig)),
        train=TrainConfig(**given_arguments(args, TrainConfig)),
        adapter=AdapterConfig(**given_arguments(args, AdapterConfig)))
    return cfg, given_arguments(args, ModelConfig)


def main(argv: list[str] | None = None) -> None:
    from valle.training.trainer import Trainer

    cfg, model_overrides = parse_args(argv)
    Trainer(cfg, model_overrides).fit()


def entry() -> None:
    """The console script and bin/ wrapper: errors as one line, exit code 2."""
    run_main(main)


if __name__ == "__main__":
    entry()
