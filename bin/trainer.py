#!/usr/bin/env python3
"""Fine-tune (or train from scratch) the AR or NAR half of VALL-E X. Run under torchrun for several GPUs."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from valle.cli import run_main  # noqa: E402
from valle.config import (DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig,  # noqa: E402
                          add_config_arguments, given_arguments)


def parse_args(argv=None) -> tuple[ExperimentConfig, dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_arguments(parser, TrainConfig)
    add_config_arguments(parser, DataConfig)
    add_config_arguments(parser, OptimConfig)
    # Model flags default to "whatever the checkpoint has" (or ModelConfig's defaults from scratch).
    add_config_arguments(parser, ModelConfig, keep_defaults=False)
    args = parser.parse_args(argv)
    cfg = ExperimentConfig(
        model=ModelConfig(),
        data=DataConfig(**given_arguments(args, DataConfig)),
        optim=OptimConfig(**given_arguments(args, OptimConfig)),
        train=TrainConfig(**given_arguments(args, TrainConfig)))
    return cfg, given_arguments(args, ModelConfig)


def main() -> None:
    from valle.training.trainer import Trainer

    cfg, model_overrides = parse_args()
    Trainer(cfg, model_overrides).fit()


if __name__ == "__main__":
    run_main(main)
