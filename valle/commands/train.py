"""Fine-tune (or train from scratch) the AR or NAR half of VALL-E X. Run under torchrun for several GPUs.

When fine-tuning, the settings no flag gives (LoRA or full fine-tuning, learning rate, steps, warmup, validation
and probe intervals) are chosen from the minutes of speech and the speakers of the training cuts (valle/plan.py);
the block that says which and why is printed at the start and kept in EXP_DIR/plan.json."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from valle.cli import ArgumentParser
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
from valle.plan import YOUR_FLAG, Choice, TrainingPlan, choose_settings

CHECK_REPORT = "check.json"  # beside tokenized/ (or shar/): the data check's report (valle/data/check.py)


def parse_args(argv=None) -> tuple[ExperimentConfig, dict, dict]:
    """-> the config (planned fields not given at their dataclass defaults), the model flags given, and the
    planned fields given (name -> value)."""
    # a recipe's train.sh names itself (VALLE_PROG) and passes its own defaults as flags
    parser = ArgumentParser(description=__doc__, prog=os.environ.get("VALLE_PROG"))
    sections = (TrainConfig, DataConfig, OptimConfig, AdapterConfig)
    for cls in sections:
        add_config_arguments(parser, cls)
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
    planned = {f.name for cls in sections for f in dataclasses.fields(cls) if f.metadata.get("planned")}
    return cfg, given_arguments(args, ModelConfig), {k: v for k, v in vars(args).items()
                                                     if k in planned and v is not None}


def speech_in(data: DataConfig) -> tuple[float, int, str]:
    """-> minutes of speech, speakers, and where they come from: the data check's report (check.json beside the
    cuts: the usable minutes, the speakers who have any) when there is one, else the training cuts (read lazily)."""
    from valle.data.files import open_cuts
    from valle.data.shar import shar_manifest_cuts

    folder = Path(data.shar_dir or data.manifest_dir)
    checked = _checked(folder.parent / CHECK_REPORT)
    if checked is not None:
        return (*checked, f"usable speech in {folder.parent / CHECK_REPORT}")
    cuts = (shar_manifest_cuts(folder / "train") if data.shar_dir else
            open_cuts(folder / "cuts_train.jsonl.gz", "run the recipe's prepare.sh first (or pass --manifest-dir)"))
    seconds, speakers = 0.0, set()
    for cut in cuts:
        seconds += cut.duration
        speakers.add(cut.supervisions[0].speaker if cut.supervisions else None)
    return seconds / 60, len(speakers), f"the training cuts in {folder}"


def _checked(report: Path) -> tuple[float, int] | None:
    """(usable minutes, speakers with any) of the data check's report; None without one (or nothing usable)."""
    try:
        usable = [float(s["usable_minutes"]) for s in json.loads(report.read_text(encoding="utf-8"))["speakers"]
                  .values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return (sum(usable), sum(1 for m in usable if m > 0)) if sum(usable) > 0 else None


def settle(cfg: ExperimentConfig, given: dict) -> tuple[TrainingPlan, str] | None:
    """Choose the planned settings a flag does not give, set them in `cfg` -> the plan and where its minutes
    came from; None when training from scratch (the flags' defaults apply). A resumed run keeps the settings of
    its EXP_DIR/plan.json."""
    from valle.text import load_tokenizer_info
    from valle.training import run_folder
    from valle.training.trainer import starting_point

    t = cfg.train
    if t.resume:
        record = run_folder.read_json(Path(t.exp_dir) / run_folder.PLAN)
        if record is None:
            return None
        plan = plan_from_record(record, given)
        source = f"this run's {Path(t.exp_dir) / run_folder.PLAN}"
    else:
        tokenizer = load_tokenizer_info(cfg.data.shar_dir or cfg.data.manifest_dir)["name"]
        if starting_point(t.init_checkpoint, tokenizer) == "none":
            return None
        minutes, speakers, source = speech_in(cfg.data)
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        plan = choose_settings(minutes, speakers, batch_seconds=cfg.data.max_duration * t.accum_grad * processes,
                               optimizer=cfg.optim.optimizer, has_codec=t.codec_weights != "none", given=given)
    for name, choice in plan.flags().items():
        section = next(s for s in (cfg.train, cfg.optim, cfg.adapter) if hasattr(s, name))
        setattr(section, name, choice.value)
    _adapters_on_their_base(cfg)
    return plan, source


def _adapters_on_their_base(cfg: ExperimentConfig) -> None:
    """Adapters chosen for a run that train.sh starts from the AR run's file (the NAR after the AR): when that
    file holds adapters, these adapters train on the same base."""
    from valle.models.checkpoint import is_adapter_file, load_adapter

    init = cfg.train.init_checkpoint
    if cfg.adapter.adapter != "none" and not cfg.train.resume and Path(init).is_file() and is_adapter_file(init):
        cfg.train.init_checkpoint = load_adapter(init).base["source"]
        print(f"{init} holds adapters: these adapters train on their base, {cfg.train.init_checkpoint}")


def plan_record(plan: TrainingPlan, source: str) -> dict:
    """What EXP_DIR/plan.json holds: the data, where its minutes came from, and each setting with its reason."""
    return {"minutes": plan.minutes, "num_speakers": plan.num_speakers, "source": source,
            "settings": {name: dataclasses.asdict(c) for name, c in plan.flags().items()}}


def plan_from_record(record: dict, given: dict) -> TrainingPlan:
    """The plan a run wrote, with the flags given now winning."""
    s = {name: Choice(given[name], YOUR_FLAG) if name in given else Choice(**c)
         for name, c in record["settings"].items()}
    method = Choice("full" if s["adapter"].value == "none" else "lora", s["adapter"].reason)
    return TrainingPlan(minutes=record["minutes"], num_speakers=record["num_speakers"], method=method,
                        base_lr=s["base_lr"], max_steps=s["max_steps"], num_epochs=s["num_epochs"],
                        warmup_steps=s["warmup_steps"], valid_interval=s["valid_interval"],
                        eval_interval=s["eval_interval"])


def main(argv: list[str] | None = None) -> None:
    from valle.training import run_folder
    from valle.training.trainer import Trainer

    cfg, model_overrides, given = parse_args(argv)
    settled = settle(cfg, given)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if settled and main_rank:
        print(settled[0].describe(settled[1]), flush=True)
    trainer = Trainer(cfg, model_overrides)
    if settled and main_rank:  # the folder is claimed now (an --overwrite emptied it)
        run_folder.write_json(Path(cfg.train.exp_dir) / run_folder.PLAN, plan_record(*settled))
    trainer.fit()
