"""Training settings chosen from the data: LoRA or full fine-tuning, the learning rate, the length of the run,
its warmup, and how often it is validated and probed, each with the reason it was chosen.

Pure: minutes of speech and speakers in, a TrainingPlan out. The table and its sources are in docs/training.md
("Settings from the data"). The facts behind it:
- full fine-tuning of a 155M-parameter half overfits a few minutes of speech within tens of steps; LoRA adapters
  (1.8M parameters, base frozen) cannot memorise them (docs/adapters.md);
- VALL-E trained from scratch with ScaledAdam at 0.05; the toolkit's fine-tuning default is 0.01 (config.DEFAULT_LR);
- peers fine-tuning on little data kept the base model's voice only at far lower learning rates (Qwen3-TTS #314:
  speaker similarity 0.03-0.06 below zero-shot after 7 h at the usual rate; MOSS-TTS-Nano #38: one speaker, small
  data: lower the rate 2-5x, and a small corpus may not beat the base model at all).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from valle.config import DEFAULT_LR
from valle.errors import UserError

FULL_FROM_MINUTES = 60.0  # an hour of speech or more: full fine-tuning; less: LoRA
LARGE_CORPUS_MINUTES = 600.0  # ten hours or more: a training set, not a voice: the default rate
FEW_MINUTES_PER_VOICE = 5.0  # adapters on less than this per speaker: half the rate
EPOCHS = {"lora": 30, "full": 10, "large": 5}  # passes over the data (early stopping may end the run sooner)
MIN_STEPS = {"lora": 100, "full": 200, "large": 200}
MAX_LORA_STEPS = 2000
VALIDATIONS_PER_RUN = 10
MAX_VALID_INTERVAL = 1000
DEFAULT_WARMUP = 200  # OptimConfig.warmup_steps


@dataclass(frozen=True)
class Choice:
    value: str | float | int
    reason: str


YOUR_FLAG = "(your flag)"


@dataclass(frozen=True)
class TrainingPlan:
    """What the trainer does with `minutes` of speech from `num_speakers` speakers. `flags()` maps it onto the
    trainer's config fields (method "full" is --adapter none)."""

    minutes: float
    num_speakers: int
    method: Choice  # "lora" | "full"
    base_lr: Choice
    max_steps: Choice
    num_epochs: Choice
    warmup_steps: Choice
    valid_interval: Choice
    eval_interval: Choice  # 0: no probe (it needs a codec)

    def flags(self) -> dict[str, Choice]:
        """Trainer config field -> its choice, in the order the block prints them."""
        adapter = Choice("lora" if self.method.value == "lora" else "none", self.method.reason)
        return {"adapter": adapter, "base_lr": self.base_lr, "max_steps": self.max_steps,
                "num_epochs": self.num_epochs, "warmup_steps": self.warmup_steps,
                "valid_interval": self.valid_interval, "eval_interval": self.eval_interval}

    def describe(self, source: str = "") -> str:
        """The block the trainer prints at the start: one line per setting with its reason. `source`: where the
        minutes came from."""
        speakers = f"{self.num_speakers} speaker" + ("s" if self.num_speakers != 1 else "")
        head = f"settings from the data: {self.minutes:.1f} min of speech from {speakers}"
        lines = [head + (f" ({source})" if source else "") + ":"]
        lines += [f"  --{name.replace('_', '-')} {c.value:<8} {c.reason}" for name, c in self.flags().items()]
        return "\n".join(lines)


def choose_settings(minutes: float, num_speakers: int, batch_seconds: float = 40.0,
                    optimizer: str = "scaled_adam", has_codec: bool = True,
                    given: Mapping[str, object] | None = None) -> TrainingPlan:
    """The settings for fine-tuning on `minutes` of speech from `num_speakers` speakers, with `batch_seconds` of
    audio per optimizer step, the learning rate scaled to `optimizer`'s default, and the evaluation probe only when
    there is a codec to hear its outputs (`has_codec`). `given`: the fields of TrainingPlan.flags() set on the
    command line; each is kept ("(your flag)") and the others follow from it (--max-steps 100 -> the warmup and
    the intervals of a 100-step run)."""
    if not minutes > 0 or num_speakers < 1:
        raise UserError(f"no training speech to plan for ({minutes:.2f} min from {num_speakers} speakers): "
                        "prepare the data first (prepare.sh)")
    given = dict(given or {})

    def pick(name: str, planned: Choice) -> Choice:
        return Choice(given[name], YOUR_FLAG) if name in given else planned

    if "adapter" in given:
        method = Choice("lora" if given["adapter"] == "lora" else "full", YOUR_FLAG)
    else:
        method = _method(minutes)
    size = "lora" if method.value == "lora" else "full" if minutes < LARGE_CORPUS_MINUTES else "large"
    base_lr = pick("base_lr", _learning_rate(minutes, num_speakers, size, optimizer))
    steps_per_epoch = max(1, math.ceil(minutes * 60 / batch_seconds))
    planned_steps = _steps(size, steps_per_epoch, batch_seconds)
    max_steps = pick("max_steps", planned_steps)
    if "num_epochs" in given and "max_steps" not in given:
        max_steps = Choice(0, "no limit: your --num-epochs ends the run")
    # what the run will last, about (--max-steps 0 is no limit: the epochs end it)
    steps = max_steps.value or given.get("num_epochs", 0) * steps_per_epoch or planned_steps.value
    num_epochs = pick("num_epochs", Choice(math.ceil(steps / steps_per_epoch),
                                           f"enough passes for {steps} steps; --max-steps ends the run"))
    warmup = pick("warmup_steps", Choice(min(DEFAULT_WARMUP, steps // 10),
                                         f"a tenth of the run, at most {DEFAULT_WARMUP} (the default)"))
    valid_interval = pick("valid_interval", Choice(
        min(MAX_VALID_INTERVAL, max(10, steps // VALIDATIONS_PER_RUN // 10 * 10)),
        f"about {VALIDATIONS_PER_RUN} validations per run (at most every {MAX_VALID_INTERVAL} steps), for early "
        "stopping and best-valid-loss.pt"))
    eval_interval = pick("eval_interval", Choice(
        2 * valid_interval.value, "every second validation: the probe speaks and scores sentences, slower than a "
        "validation; step 0 (the released model) is the baseline it must beat") if has_codec else
        Choice(0, "off: the probe needs --codec-weights (the codec the data was prepared with)"))
    return TrainingPlan(minutes=minutes, num_speakers=num_speakers, method=method, base_lr=base_lr,
                        max_steps=max_steps, num_epochs=num_epochs, warmup_steps=warmup,
                        valid_interval=valid_interval, eval_interval=eval_interval)


def _method(minutes: float) -> Choice:
    if minutes < FULL_FROM_MINUTES:
        return Choice("lora", f"under {FULL_FROM_MINUTES:g} min: full fine-tuning would overfit within tens of "
                              "steps; adapters (1.8M parameters, the released weights frozen) cannot")
    return Choice("full", f"{FULL_FROM_MINUTES:g} min or more: enough speech to move every weight")


def _steps(size: str, steps_per_epoch: int, batch_seconds: float) -> Choice:
    steps = max(MIN_STEPS[size], EPOCHS[size] * steps_per_epoch)
    why = (f"{EPOCHS[size]} passes over the data at ~{steps_per_epoch} steps each ({batch_seconds:g} s of audio "
           "per step)")
    if steps == MIN_STEPS[size]:
        why = f"at least {steps} steps, so that the run is long enough to be judged by its validations"
    if size == "lora" and steps > MAX_LORA_STEPS:
        steps, why = MAX_LORA_STEPS, f"{why}, capped at {MAX_LORA_STEPS}: adapters settle long before"
    return Choice(steps, why)


def _learning_rate(minutes: float, num_speakers: int, size: str, optimizer: str) -> Choice:
    """A fraction of the optimizer's fine-tuning default (ScaledAdam 0.01, a fifth of VALL-E's 0.05 from
    scratch): lower where little data must not pull the model away from the released voice."""
    default = DEFAULT_LR[optimizer]
    per_voice = minutes / num_speakers
    if size == "lora" and per_voice < FEW_MINUTES_PER_VOICE:
        factor, why = 0.5, (f"{per_voice:.1f} min per voice, under {FEW_MINUTES_PER_VOICE:g}: half the default, "
                            "as peers found lower rates keep the base model's voice on little data")
    elif size == "lora":
        factor, why = 1.0, "the default: adapters start at zero and move at the usual fine-tuning rate"
    elif size == "full":
        factor, why = 0.5, (f"under {LARGE_CORPUS_MINUTES / 60:g} h every weight moves: half the default (peers lost "
                            "speaker similarity fine-tuning 7 h at their usual rate)")
    else:
        factor, why = 1.0, (f"{LARGE_CORPUS_MINUTES / 60:g} h or more: the default, a fifth of the 0.05 VALL-E "
                            "trained with from scratch")
    return Choice(factor * default, f"{why} ({optimizer} default {default:g})")
