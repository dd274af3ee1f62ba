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
    batch_seconds: float = option(0.0, "padded audio per Encodec call (longer files go in chunks); 0: 120 on a GPU, "
                                     "15 on a CPU")
    symbols: str = option("", "espeak only: an existing unique_text_tokens.k2symbols; empty: one built from the corpus")
    heldout_speakers: str = option("", "space-separated speakers whose utterances all go to test")
    loudness_normalize: bool = option(False, "normalize stage: bring every file to one loudness (-20 LUFS, peaks kept "
                                             "below full scale); the files are copied", type=str2bool)
    check_asr: str = option("none", "check stage: an offline ASR to check the transcripts against (WER per file): "
                                    "pocketsphinx (English), a Whisper model (e.g. small), or none (fast)")
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
                                "(bin/segment.py -> DATA/segments; their metadata.txt becomes --corpus); empty: off",
                                type=Path, recipes=("custom",))
    keep_speaker: str = option("", "stage -1: a few seconds of the voice to keep from the long recordings "
                             "(others are set aside); empty: every voice", type=Path, recipes=("custom",))


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
    """Bash assignments for a recipe's prepare.sh: each option's default, their help (OPTION_HELP, lines of
    NAME<TAB>TEXT for --help) and the corpus languages (PREPARE_LANGUAGES, PREPARE_LANGUAGES_TEXT)."""
    fields = recipe_fields(recipe)
    lines = [f"{f.name}={shlex.quote(shell_value(f.default))}" for f in fields]
    lines.append("OPTION_HELP=" + shlex.quote("".join(f"{f.name}\t{f.metadata['help']}\n" for f in fields)))
    lines.append(f"PREPARE_LANGUAGES=({' '.join(LANGUAGES)})")
    lines.append(f"PREPARE_LANGUAGES_TEXT={shlex.quote(or_list(LANGUAGES))}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valle.data.options",
                                     description="Print the preparation options' defaults as bash assignments.")
    parser.add_argument("--shell", action="store_true", required=True, help="print the bash assignments to eval")
    parser.add_argument("recipe", nargs="?", default="", help="the recipe (custom adds --corpus, libritts "
                        "--dataset-parts and --download-dir)")
    print(shell_script(parser.parse_args(argv).recipe), end="")


if __name__ == "__main__":
    main()
