"""The options of data preparation, with their defaults and help: the one place of both.

`PrepareOptions` is what the web app fills in; the stage CLIs (valle.commands) build their flags from its fields
(`add_option`), and the recipes' prepare.sh get the same defaults and help from `python -m valle.data.options
--shell RECIPE` (they only pass the values on). Torch-free: the recipes read it in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path

from valle.config import LANGUAGES, option, or_list, str2bool
from valle.errors import UserError
from valle.text import TOKENIZER_NAMES


# Fields are `option`s (valle.config); their metadata may also name `recipes`: the recipes that have the option
# (absent: every recipe).
@dataclass
class PrepareOptions:
    """Everything one preparation of a data folder depends on. The order of the first fields is the web app's."""

    corpus: str = option("", "folder of audio + same-stem transcripts (.txt, .lab or .normalized.txt), or a metadata "
                           "file of path|text[|speaker] lines (required for stage 0)", type=Path, recipes=("custom",))
    data_dir: str = option("data", "output folder, relative to where you run this", type=Path)
    language: str = option("en", f"language of the transcripts: {or_list(LANGUAGES)}", choices=LANGUAGES)
    tokenizer: str = option("vallex", "vallex (fine-tuning the released model) or espeak (training from scratch)",
                          choices=TOKENIZER_NAMES)
    codec_weights: str = option("pretrained", "Encodec weights: pretrained (downloaded once into the torch hub cache), "
                                            "random (tests only: the codes are meaningless), or a file path")
    min_duration: float = option(0.5, "reject recordings shorter than this many seconds")
    max_duration: float = option(20.0, "reject recordings longer than this many seconds")
    silence_db: float = option(-60.0, "reject recordings whose RMS level is below this many dBFS")
    dev_ratio: float = option(0.05, "share of the utterances for the dev set when the corpus has no dev part "
                                  "(at least one)")
    test_ratio: float = option(0.05, "share of the utterances for the test set when the corpus has no test part "
                                   "(0 for none)")
    seed: int = option(42, "seed of the random train/dev/test split")
    device: str = option("auto", "where Encodec runs: auto (cuda when available), cpu, cuda, cuda:1, ...")
    batch_seconds: float = option(0.0, "audio per Encodec call: a longer file is encoded in chunks of this length "
                                     "(bounds memory); 0: 120 on a GPU, 15 on a CPU")
    symbols: str = option("", "espeak only: an existing unique_text_tokens.k2symbols; empty: one built from the corpus")
    heldout_speakers: str = option("", "space-separated speakers whose utterances all go to test")
    loudness_normalize: bool = option(False, "normalize stage: bring every file to one loudness (-20 LUFS, peaks kept "
                                             "below full scale); the files are copied", type=str2bool)
    check_asr: str = option("auto", "check stage: how the transcripts are checked against the audio: auto "
                                    "(English: aligned by pocketsphinx; other languages: not checked), a Whisper "
                                    "model (e.g. small: WER per file), or none")
    drop_flagged: bool = option(False, "check stage: move the flagged files to rejected.tsv instead of only listing "
                                       "them in check.html", type=str2bool)
    num_jobs: int = option(1, "parallel processes for the normalize stage")
    num_workers: int = option(1, "parallel processes of the codes stage (per GPU under torchrun): the cuts are "
                                 "split into that many shards, each with its own codes file and done-marker")
    num_gpus: int = option(1, "GPUs of this machine for the codes stage: above 1 it runs under torchrun, "
                              "--num-workers shards on each GPU")
    format: str = option("jsonl", "what training reads: jsonl (cut manifests + HDF5 codes in DATA/tokenized) or "
                              "shar (also lhotse Shar shards in DATA/shar: train with --shar-dir DATA/shar)",
                         choices=("jsonl", "shar"))
    shar_shard_size: int = option(1000, "cuts per Shar shard (--format shar)")
    shar_audio: str = option("none", "audio in the Shar shards: none (the cuts point at the prepared files) or "
                                     "flac (copied in, for machines without the data folder)", choices=("none", "flac"))
    dataset_parts: str = option("dev-clean test-clean train-clean-100", "LibriTTS parts (dev-* -> dev, test-* -> "
                              "test, the rest -> train)", recipes=("libritts",))
    download_dir: str = option("download", "where LibriTTS/ is downloaded and unpacked", type=Path,
                             recipes=("libritts",))
    long_recordings: str = option("", "stage -1: a folder (or file) of long recordings to cut into segments first "
                                "(valle segment -> DATA/segments; their metadata.txt becomes --corpus); empty: off",
                                type=Path, recipes=("custom",))
    keep_speaker: str = option("", "stage -1: a few seconds of the voice to keep from the long recordings "
                             "(others are set aside); empty: every voice", type=Path, recipes=("custom",))

    def __post_init__(self):
        """The one check of the values, whichever face gave them (prepare.sh through `--check`, the stage CLIs,
        the web page): a value out of range is a UserError naming the flag. Written so that NaN fails."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise _bad(f.name, value, f"use {or_list(f.metadata['choices'])}")
        for name in ("num_jobs", "num_workers", "num_gpus", "shar_shard_size"):
            if not getattr(self, name) >= 1:
                raise _bad(name, getattr(self, name), "use 1 or more")
        if not 0 < self.min_duration < self.max_duration:
            raise UserError(f"--min-duration {self.min_duration} --max-duration {self.max_duration}: "
                            "need 0 < min < max (seconds)")
        for name in ("dev_ratio", "test_ratio"):
            if not 0 <= getattr(self, name) < 1:
                raise _bad(name, getattr(self, name), "use a share from 0 to below 1")
        if not self.dev_ratio + self.test_ratio < 1:
            raise UserError(f"--dev-ratio {self.dev_ratio} --test-ratio {self.test_ratio}: together below 1, "
                            "or nothing is left to train on")
        if not self.batch_seconds >= 0:
            raise _bad("batch_seconds", self.batch_seconds, "use 0 (the default for the device) or more seconds")


def _bad(name: str, value, need: str) -> UserError:
    return UserError(f"--{name.replace('_', '-')} {value}: {need}")


FIELDS = {f.name: f for f in dataclasses.fields(PrepareOptions)}


def add_option(parser: argparse.ArgumentParser, name: str, **overrides) -> None:
    """--name-with-dashes for the field `name`: its default, help, type and choices, unless `overrides` says
    otherwise (a CLI that differs on purpose, e.g. --symbols whose 'none' is None)."""
    f = FIELDS[name]
    kw = {"default": f.default, "type": f.metadata.get("type", type(f.default)),
          "help": f.metadata["help"].replace("%", "%%")}
    if "choices" in f.metadata:
        kw["choices"] = f.metadata["choices"]
    kw.update(overrides)
    parser.add_argument("--" + name.replace("_", "-"), **kw)


def options_of(args: argparse.Namespace) -> PrepareOptions:
    """The preparation options a stage CLI was given; the others keep their defaults."""
    return PrepareOptions(**{name: value for name, value in vars(args).items() if name in FIELDS})


def shell_value(value) -> str:
    """A value as the recipes write it (and as the .done markers' signatures hold it): 20, 0.5, -60, en."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def recipe_fields(recipe: str = "") -> list[dataclasses.Field]:
    """The options a recipe has: the shared ones, and those of `recipe` (custom: --corpus)."""
    return [f for f in FIELDS.values() if recipe in f.metadata.get("recipes", (recipe,))]


def shell_script(recipe: str = "") -> str:
    """Bash assignments for a recipe's prepare.sh: each option's default, their names (PREPARE_FIELDS, which
    egs/shared/env.sh's check_options passes to `--check`) and their help (OPTION_HELP, lines of NAME<TAB>TEXT
    for --help)."""
    fields = recipe_fields(recipe)
    lines = [f"{f.name}={shlex.quote(shell_value(f.default))}" for f in fields]
    lines.append(f"PREPARE_FIELDS=({' '.join(f.name for f in fields)})")
    lines.append("OPTION_HELP=" + shlex.quote("".join(f"{f.name}\t{f.metadata['help']}\n" for f in fields)))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valle.data.options",
                                     description="Print the preparation options' defaults as bash assignments "
                                                 "(--shell), or check a recipe's option values (--check).")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--shell", action="store_true", help="print the bash assignments to eval")
    mode.add_argument("--check", action="store_true", help="check the recipe's options given after the recipe "
                      "(--name VALUE each), as every face does; exit 2 with one line naming a bad value")
    parser.add_argument("recipe", nargs="?", default="", help="the recipe (custom adds --corpus, libritts "
                        "--dataset-parts and --download-dir)")
    args, values = parser.parse_known_args(argv)
    if args.shell:
        print(shell_script(args.recipe), end="")
        return
    given = argparse.ArgumentParser(prog=f"{args.recipe or 'the recipe'}'s prepare.sh")
    for f in recipe_fields(args.recipe):
        add_option(given, f.name, choices=None)  # the values are checked by PrepareOptions, not argparse
    options_of(given.parse_args(values))


if __name__ == "__main__":
    from valle.cli import run_main

    run_main(main)
