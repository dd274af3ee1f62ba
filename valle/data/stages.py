"""The preparation stages, in order: the one list for egs/shared/prepare_stages.sh, the web app and the reports.

Each stage has a name (its marker DATA/.<name>.done), a report name (its key in summary.json and its
reports/rejected_<report>.tsv), what it does and writes, and the options its marker's signature holds: a stage
that finished with the same values of those options is skipped when the preparation runs again.

`python -m valle.data.stages --shell [RECIPE]` prints, for a recipe to `eval`, the stage list (STAGE_NAMES,
STAGE_DOES, STAGE_WRITES, STAGE_OPTIONS), the option defaults (valle.data.options), their help (OPTION_HELP)
and the corpus languages (PREPARE_LANGUAGES). Torch-free, so that it takes a fraction of a second.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

from valle.config import LANGUAGES, or_list
from valle.data.options import recipe_fields, shell_value


@dataclass(frozen=True)
class Stage:
    name: str  # the marker DATA/.<name>.done and the name in the logs
    report: str  # the key in summary.json, reports/rejected_<report>.tsv
    does: str  # what it does (logs, --help)
    writes: str  # what it writes, relative to the data folder
    options: tuple[str, ...]  # the options of its signature (the corpus stage's is the recipe's own)


STAGES = (
    Stage("corpus", "scan", "read the corpus", "manifests/entries_*.jsonl", ()),
    Stage("normalize", "normalize", "validate, downmix to mono, resample to 24 kHz", "manifests/cuts_*.jsonl.gz",
          ("min_duration", "max_duration", "silence_db")),
    Stage("codes", "codes", "Encodec codes", "tokenized/codes_*.h5", ("codec_weights",)),
    Stage("text", "text", "text tokens", "tokenized/text_tokenizer.json", ("tokenizer", "language", "symbols")),
    Stage("split", "split", "split", "tokenized/cuts_{train,dev,test}.jsonl.gz",
          ("dev_ratio", "test_ratio", "seed", "heldout_speakers")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
REPORT_STAGES = tuple(s.report for s in STAGES)  # a stage's report replaces its own and drops the later ones'


def signature(stage: Stage, values: dict) -> str:
    """What the stage's marker holds: `name=value` of its options, as prepare_stages.sh writes it."""
    return " ".join(f"{name}={shell_value(values[name])}" for name in stage.options)


def _array(name: str, items) -> str:
    return f"{name}=({' '.join(shlex.quote(str(i)) for i in items)})"


def shell_script(recipe: str = "") -> str:
    """Bash assignments: the stage list, the option defaults and help, the corpus languages."""
    fields = recipe_fields(recipe)
    lines = [_array("STAGE_NAMES", STAGE_NAMES), _array("STAGE_DOES", (s.does for s in STAGES)),
             _array("STAGE_WRITES", (s.writes for s in STAGES)),
             _array("STAGE_OPTIONS", (" ".join(s.options) for s in STAGES))]
    lines += [f"{f.name}={shlex.quote(shell_value(f.default))}" for f in fields]
    lines.append("OPTION_HELP=" + shlex.quote("".join(f"{f.name}\t{f.metadata['help']}\n" for f in fields)))
    lines += [_array("PREPARE_LANGUAGES", LANGUAGES), f"PREPARE_LANGUAGES_TEXT={shlex.quote(or_list(LANGUAGES))}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valle.data.stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shell", action="store_true", help="print the bash assignments for a recipe to eval")
    parser.add_argument("recipe", nargs="?", default="", help="the recipe (custom adds --corpus)")
    args = parser.parse_args(argv)
    if args.shell:
        print(shell_script(args.recipe), end="")
    else:
        for n, s in enumerate(STAGES):
            print(f"{n} {s.name}: {s.does} -> {s.writes} ({' '.join(s.options) or 'the recipe`s corpus'})")


if __name__ == "__main__":
    main()
