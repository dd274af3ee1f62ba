"""Typed configuration shared by the CLIs, the trainer and the checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import yaml

from valle.errors import UserError
from valle.storage import atomic_write_text

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def str2bool(value: str | bool) -> bool:
    """Parse a boolean flag strictly: true/false/1/0/yes/no/on/off, anything else is an error."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false/1/0/yes/no), got {value!r}")


# Language ids inside the model (the released checkpoint's order); the one list of supported languages.
LANGUAGE_IDS = {"en": 0, "zh": 1, "ja": 2}
LANGUAGES = tuple(LANGUAGE_IDS)
INPUT_LANGUAGES = LANGUAGES + ("mix",)  # what a text to speak may be: "mix" carries its own marks ([EN]..[EN])
NUM_QUANTIZERS = 8  # Encodec 24 kHz at 6 kbps: 8 codebooks of 1024 entries at 75 Hz
# The optimizers the trainer offers and their default peak learning rates (--base-lr 0). ScaledAdam's is a
# fine-tuning rate; VALL-E trained from scratch with 0.05.
DEFAULT_LR = {"scaled_adam": 0.01, "adamw": 1e-4}
NAR_PREFIX_RANGES = ("released", "lifeiteng")
ENGINES = ("torch", "onnxruntime")  # what runs a speaking model (valle.inference.load_for_inference)


def option(default, help: str, **kw):
    """A config field that is also a CLI flag: `help` becomes the flag's help text; kw: more flag metadata
    (`choices`, `nargs`, `type` when not the default's), `valid`: (test, what it needs) of a value, checked by
    `check_fields`, and `planned=True`: the trainer chooses it from the data (valle/plan.py)."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def at_least(low: float) -> tuple:
    """`valid` of an option: `low` or more (NaN fails, as it compares False)."""
    return lambda v: v >= low, f"need {low} or more"


POSITIVE = (lambda v: v > 0, "need a value > 0")


def check_fields(config) -> None:
    """Every field of a config against its `choices` and `valid`: the one check of a config's values, whichever
    face (flags, the page, a config.yaml) made it. The UserError names the command-line flag."""
    for f in dataclasses.fields(config):
        value, flag = getattr(config, f.name), "--" + f.name.replace("_", "-")
        if "choices" in f.metadata and value not in f.metadata["choices"]:
            raise UserError(f"{flag} {value}: use {or_list(map(str, f.metadata['choices']))}")
        if "valid" in f.metadata and not f.metadata["valid"][0](value):
            raise UserError(f"{flag} {value}: {f.metadata['valid'][1]}")


def or_list(items) -> str:
    """("en", "zh", "ja") -> "en, zh or ja"."""
    items = list(items)
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)


@dataclass
class ModelConfig:
    """Sizes and switches of the VALL-E X model. Defaults are the released checkpoint's."""

    d_model: int = option(1024, "model width (from the checkpoint when fine-tuning)")
    nhead: int = option(16, "attention heads (not stored in the released checkpoint)")
    num_layers: int = option(12, "layers of each half (from the checkpoint when fine-tuning)")
    text_vocab_size: int = option(2048, "rows of the text embedding (the released tokenizer uses ids < 70)")
    audio_vocab_size: int = option(1024, "Encodec codes per codebook; the AR adds EOS (1024) and BOS (1025)")
    num_quantizers: int = option(NUM_QUANTIZERS, "Encodec codebooks: 1 for the AR, 7 for the NAR")
    num_languages: int = option(len(LANGUAGE_IDS), "rows of the language embeddings ("
                              + ", ".join(f"{lang} {i}" for lang, i in LANGUAGE_IDS.items()) + ")")
    share_embedding: bool = option(True, "tie NAR predict layer j to NAR audio embedding j+2, as released")
    add_prenet: bool = option(False, "text/audio prenets (the released checkpoint has none)")
    prefix_mode: int = option(1, "NAR prompt in training: 0 none, 1 random prefix of the utterance, 2 another segment",
                            choices=(0, 1, 2))
    prefix_range: str = option("released", "NAR prompt length in training (prefix mode 1), with L a quarter of the "
                             "batch's shortest utterance: released = [0, 2L) frames as the released code (also trains "
                             "the no-prompt case), lifeiteng = [L, 2L)", choices=NAR_PREFIX_RANGES)
    dropout: float = option(0.1, "dropout in the transformer layers")
    text_bos_id: int = option(-1, "id put before the text of each utterance (-1: none, as VALL-E X; models trained "
                                "from scratch on espeak-tokenized cuts use the tokenizer's <bos>)")
    text_eos_id: int = option(-1, "id put after the text of each utterance (-1: none; espeak: <eos>)")

    def __post_init__(self):
        check_fields(self)
        if self.nhead < 1 or self.d_model % self.nhead:
            divisors = [n for n in (1, 2, 4, 8, 16, 32) if self.d_model % n == 0]
            raise UserError(f"--nhead {self.nhead} does not divide the model width {self.d_model} (--d-model): "
                            f"use one of {divisors}")

    def frame_text(self, ids: list[int], langs: list) -> tuple[list[int], list]:
        """Text ids and their languages as the model reads them: within BOS/EOS when the model has them."""
        if self.text_bos_id < 0:
            return list(ids), list(langs)
        return [self.text_bos_id, *ids, self.text_eos_id], [langs[0], *langs, langs[-1]]

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class DataConfig:
    manifest_dir: str = option("data/tokenized", "folder with cuts_{train,dev}.jsonl.gz and text_tokenizer.json")
    shar_dir: str = option("", "train and validate from this lhotse Shar folder (prepare.sh --format shar writes "
                               "data/shar) instead of --manifest-dir's cuts and HDF5 codes")
    max_duration: float = option(40.0, "seconds of audio per batch (per GPU)", valid=POSITIVE)
    num_buckets: int = option(10, "duration buckets of the DynamicBucketingSampler (1: no bucketing)",
                              valid=at_least(1))
    quadratic_duration: float = option(0.0, "lhotse quadratic_duration: penalise long cuts in batch size (0 = off)",
                                       valid=at_least(0))
    shuffle: bool = option(True, "shuffle the training cuts (seeded, per epoch)")
    drop_last: bool = option(False, "train only: drop each bucket's last incomplete batch (with little data that "
                                  "is most of it)")
    filter_min_duration: float = option(0.5, "train only: drop cuts shorter than this (seconds)")
    filter_max_duration: float = option(14.0, "train only: drop cuts longer than this (seconds)")
    num_workers: int = option(2, "DataLoader worker processes", valid=at_least(0))

    def __post_init__(self):
        check_fields(self)


@dataclass
class OptimConfig:
    optimizer: str = option("scaled_adam", " | ".join(DEFAULT_LR), choices=tuple(DEFAULT_LR))
    base_lr: float = option(0.0, "peak learning rate; 0 = the optimizer's default: "
                               + ", ".join(f"{lr:g} for {name}" for name, lr in DEFAULT_LR.items())
                               + " (VALL-E from scratch used 0.05 with scaled_adam)", valid=at_least(0), planned=True)
    weight_decay: float = option(0.01, "AdamW only", valid=at_least(0))
    clipping_scale: float = option(2.0, "ScaledAdam: clip gradients at this multiple of the median recent norm")
    clipping_update_period: int = option(100, "ScaledAdam: optimizer steps between updates of the clipping threshold "
                                            "(icefall 100; the SyntheticSpeech VALL-E X fork 1000)")
    warmup_steps: int = option(200, "Eden linear warmup, in optimizer steps", valid=at_least(0), planned=True)
    warmup_start: float = option(0.5, "Eden: lr factor at step 0 of the warmup")
    lr_steps: float = option(5000.0, "Eden lr_batches: steps after which the lr decays as step^-0.5")
    lr_epochs: float = option(4.0, "Eden lr_epochs: epochs after which the lr decays as epoch^-0.5")

    def __post_init__(self):
        check_fields(self)


@dataclass
class TrainConfig:
    exp_dir: str = option("exp", "where checkpoints, config.yaml, the log and tensorboard go")
    model_name: str = option("ar", "which half to train: ar | nar | both", choices=("ar", "nar", "both"))
    init_checkpoint: str = option("auto", "start from: vallex (the released checkpoint, downloaded once) | PATH | none "
                                        "(from scratch) | auto (vallex for vallex-tokenized cuts, else none)")
    trainable: tuple = option((), "regexes (re.match on parameter names) narrowing what is trained", nargs="*")
    num_epochs: int = option(20, "stop after this many epochs", valid=at_least(1), planned=True)
    max_steps: int = option(0, "stop after this many optimizer steps (0 = no limit)", valid=at_least(0), planned=True)
    accum_grad: int = option(1, "micro-batches per optimizer step", valid=at_least(1))
    valid_interval: int = option(500, "validate every N optimizer steps (and at every epoch end)", valid=at_least(1),
                                 planned=True)
    save_every_n: int = option(1000, "write checkpoint-<step>.pt every N optimizer steps", valid=at_least(1))
    keep_last_k: int = option(3, "keep this many checkpoint-<step>.pt and this many epoch-<n>.pt files "
                               "(best-valid-loss.pt and last.pt are always kept; only last.pt holds the optimizer "
                               "state)", valid=at_least(1))
    early_stop_patience: int = option(0, "stop after N validations without a better valid loss (0 = off)",
                                      valid=at_least(0))
    max_bad_steps: int = option(20, "stop when this many optimizer steps in a row had a NaN/inf loss",
                                valid=at_least(1))
    log_interval: int = option(10, "log train metrics every N optimizer steps", valid=at_least(1))
    dtype: str = option("auto", "auto (bfloat16 on CUDA that supports it, else float32) | bfloat16 | float16 | float32",
                      choices=("auto", "bfloat16", "float16", "float32"))
    device: str = option("auto", "auto | cpu | cuda")
    seed: int = option(42, "random seed (sampler, NAR codebooks, dropout)")
    resume: bool = option(False, "continue from exp_dir/last.pt exactly where it stopped")
    dist_timeout: float = option(30.0, "several processes (torchrun): minutes a rank waits for the others before the "
                                     "run stops with a message (a rank that dies stops the others at once)",
                                 valid=POSITIVE)
    overwrite: bool = option(False, "start over in an exp_dir that holds a run: its checkpoints, logs and tensorboard "
                                  "files are deleted first (without it such a folder is refused)")
    codec_weights: str = option("none", "codec for an audio sample at each validation: none | pretrained | random "
                                        "| PATH")
    eval_interval: int = option(0, "evaluation probe at a validation at most every N optimizer steps: a few dev "
                                 "sentences with same-speaker prompts -> eval/sim, eval/eos_rate, eval/duration_ratio, "
                                 "eval/flagged and best-eval.pt (needs --codec-weights; 0 = off)", valid=at_least(0),
                               planned=True)
    eval_utterances: int = option(4, "dev sentences the evaluation probe speaks", valid=at_least(1))
    activation_checkpointing: bool = option(False, "recompute each transformer layer in the backward pass instead of "
                                                 "keeping its activations: less memory, about a third more time")
    compile: bool = option(False, "torch.compile the training forward (Triton kernels on GPUs, a C++ compiler on CPU): "
                                "a slow first step and one recompile when batch shapes change, then faster steps")

    def __post_init__(self):
        check_fields(self)


@dataclass
class AdapterConfig:
    """Low-rank adapters (valle/models/adapters.py). Defaults suit a few minutes of one voice: rank 8 on the
    attention and feed-forward weights is ~1.8M parameters per half (a 7 MB file), too few to memorise minutes
    of speech the way full fine-tuning does within tens of steps; alpha 2 x rank (scale 2) lets them move fast."""

    adapter: str = option("none", "none (full fine-tuning) | lora: train low-rank adapters, the base stays frozen "
                                "(--trainable then adds base tensors, e.g. norms)", choices=("none", "lora"),
                      planned=True)
    lora_rank: int = option(8, "rank r of each LoRA pair", valid=at_least(1))
    lora_alpha: float = option(16.0, "LoRA alpha: the adapter's update is scaled by alpha / rank", valid=POSITIVE)
    lora_dropout: float = option(0.0, "dropout on the adapters' input (the base's own dropout, --dropout, stays on)",
                                 valid=(lambda v: 0 <= v < 1, "need a value in [0, 1)"))
    lora_targets: str = option("attn,ffn", "comma-separated: attn (q, k, v in the packed in_proj_weight, one pair "
                                         "each, and out_proj), ffn (linear1, linear2), predict (output layers)")

    def __post_init__(self):
        check_fields(self)


CONFIG_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig,
                   "adapter": AdapterConfig}

_TYPES = {"int": int, "float": float, "str": str, "bool": str2bool, "tuple": str}


MAX_FRAMES = 75 * 120  # two minutes per generation at most: the KV cache grows with it


class SamplingError(UserError):
    """A Sampling value out of range: `field` is the attribute. The message names the command-line flag
    (`--top-p 0.0: ...`); `api_message` names the field as the speech API's JSON spells it (`top_p 0.0: ...`)."""

    def __init__(self, field: str, value, need: str):
        flag = field if field == "min_frames" else "--" + field.replace("_", "-")  # min_frames has no flag
        super().__init__(f"{flag} {value}: {need}")
        self.field, self.api_message = field, f"{field} {value}: {need}"


@dataclass(frozen=True)
class Sampling:
    """How the AR picks each code and how long it may run: the one generation config, checked once, here.

    top_k: sample among the k most likely codes; 1 is greedy, 0 switches the filter off.
    top_p: nucleus threshold in (0, 1]; 1.0 switches it off.  temperature: finite and > 0.
    seed: seeds the draws (a fresh generator per generation); None draws from torch's global generator.
    max_frames: stop after this many frames (1..MAX_FRAMES); None: 16 per text token, prompt text included.
    min_frames: EOS is not allowed before this many frames.
    A value out of range is a SamplingError naming the command-line flag that sets it (and, in `field`, the
    attribute: the speech API names that one).
    """

    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int | None = None
    max_frames: int | None = None
    min_frames: int = 0

    def __post_init__(self):
        # Written so that NaN fails every test (NaN compares False with everything).
        if not (_whole(self.top_k) and self.top_k >= 0):
            raise SamplingError("top_k", self.top_k, "need a whole number >= 0 (1 = greedy, 0 = no limit)")
        if not 0 < self.top_p <= 1:
            raise SamplingError("top_p", self.top_p, "need a value in (0, 1] (1 = off)")
        if not 0 < self.temperature < math.inf:
            raise SamplingError("temperature", self.temperature, "need a finite temperature > 0")
        if self.seed is not None and not _whole(self.seed):
            raise SamplingError("seed", self.seed, "need a whole number")
        if self.max_frames is not None and not (_whole(self.max_frames) and 1 <= self.max_frames <= MAX_FRAMES):
            raise SamplingError("max_frames", self.max_frames, f"must be between 1 and {MAX_FRAMES} "
                                f"({MAX_FRAMES // 75} s; longer text is split into sentences)")
        if not (_whole(self.min_frames) and self.min_frames >= 0):
            raise SamplingError("min_frames", self.min_frames, "need a whole number >= 0")

    def for_batch(self, b: int) -> Sampling:
        """The sampling of batch `b` of a run: seed + b (valle infer and evaluation seed their batches so)."""
        return self if self.seed is None else dataclasses.replace(self, seed=self.seed + b)


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_language(language: str, where: str) -> str:
    """A text's language: one of INPUT_LANGUAGES, else a UserError that starts with `where`."""
    if language not in INPUT_LANGUAGES:
        raise UserError(f"{where}: unknown language {language!r}; use one of {', '.join(INPUT_LANGUAGES)}")
    return language


@dataclass(frozen=True)
class SpeechOptions:
    """How a text is spoken, checked here once for `valle infer`'s flags and the page's Synthesize tab (a
    UserError names the command's flag).

    language: the text's, one of INPUT_LANGUAGES (mix: parts marked [EN]..[EN][ZH]..[ZH]). prompt_language: the
    recorded prompt's transcript's, one of LANGUAGES; None: the text's (en when that is mix). sampling: how the AR
    picks codes (it checks itself). codec_weights: Encodec 24 kHz weights: pretrained, random (noise) or a file.
    """

    language: str = "en"
    prompt_language: str | None = None
    sampling: Sampling = Sampling(seed=0)
    codec_weights: str = "pretrained"

    def __post_init__(self):
        check_language(self.language, "--language")
        if self.prompt_language is not None and self.prompt_language not in LANGUAGES:
            raise UserError(f"--prompt-language {self.prompt_language!r}: a transcript has one language, one of "
                            f"{', '.join(LANGUAGES)}")

    @property
    def transcript_language(self) -> str:
        """The language of a recorded prompt's transcript."""
        return self.prompt_language or (self.language if self.language != "mix" else "en")


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation run is asked for, checked here once for every face (`valle evaluate`'s flags, the page's
    Compare tab); a bad value is a UserError naming the command's flag.

    num_utterances: how many cuts, chosen deterministically by `seed` (0: all). prompt: "same-speaker" (another
    utterance of the target's speaker) or the path of a preset .npz used for every sentence. seed: which
    utterances and prompts; sampling (its own seed): how every checkpoint speaks. batch_size: sentences generated
    together. codec_weights: pretrained, random (tests) or a file."""

    num_utterances: int = 20
    prompt: str = "same-speaker"
    seed: int = 0
    sampling: Sampling = Sampling(seed=0)
    batch_size: int = 8
    codec_weights: str = "pretrained"

    def __post_init__(self):
        if not self.num_utterances >= 0:
            raise UserError(f"--num-utterances {self.num_utterances}: need 0 (all) or more")
        if not self.batch_size >= 1:
            raise UserError(f"--batch-size {self.batch_size}: need 1 or more")
        if self.prompt != "same-speaker" and not Path(self.prompt).is_file():
            raise UserError(f"--prompt preset {self.prompt}: no such file; make one with valle make-prompt")


def add_config_arguments(parser: argparse.ArgumentParser, cls, keep_defaults: bool = True) -> None:
    """One `--flag-name` per field of `cls`, typed, with the field's help. Without `keep_defaults`
    every default is None, so `given_arguments` can tell "not given" from "given"; so is the default of a
    planned field (chosen from the data unless given)."""
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        text = f.metadata["help"].replace("%", "%%")
        planned = f.metadata.get("planned", False)
        shown = (f"chosen from the data when fine-tuning (docs/training.md), else {f.default}" if planned
                 else "%(default)s" if keep_defaults else f"the checkpoint's; from scratch {f.default}")
        kw = {"type": _TYPES[f.type], "default": f.default if keep_defaults and not planned else None,
              "help": f"{text} (default: {shown})"}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if "nargs" in f.metadata:
            kw["nargs"] = f.metadata["nargs"]
        group.add_argument("--" + f.name.replace("_", "-"), **kw)


def given_arguments(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` that were given on the command line (not None)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}


@dataclass
class ExperimentConfig:
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    adapter: AdapterConfig = dataclasses.field(default_factory=AdapterConfig)

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(getattr(self, name)) for name in CONFIG_SECTIONS}

    def save_yaml(self, path: Path) -> None:
        d = self.to_dict()
        d["train"]["trainable"] = list(d["train"]["trainable"])
        text = yaml.safe_dump(d, sort_keys=False)
        atomic_write_text(path, text)

    @classmethod
    def load_yaml(cls, path: Path) -> ExperimentConfig:
        d = yaml.safe_load(Path(path).read_text())
        d["train"]["trainable"] = tuple(d["train"]["trainable"])
        return cls(**{name: CONFIG_SECTIONS[name](**d.get(name, {})) for name in CONFIG_SECTIONS})  # older: no adapter
