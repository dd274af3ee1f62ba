"""`valle`, the one command: `valle <command> [options]` runs valle.commands.<module>.main(options).

Each program is a module here with main(argv); this table names them and groups them for
`valle --help`. Nothing is imported until a command runs, so the listing (and a typo) answers at once.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass

from valle.cli import run_main
from valle.errors import UserError


@dataclass(frozen=True)
class Command:
    module: str  # valle.commands.<module>
    summary: str  # one line of `valle --help`
    argv: tuple[str, ...] = ()  # put before the user's options: a subcommand of the module's own parser


GROUPS: dict[str, dict[str, Command]] = {
    "Data": {
        "prepare scan": Command("prepare_corpus", "your own recordings (a folder or metadata file) -> entries",
                                ("scan",)),
        "prepare download-libritts": Command("prepare_corpus", "download LibriTTS parts (lhotse; needs internet)",
                                             ("download-libritts",)),
        "prepare libritts": Command("prepare_corpus", "LibriTTS manifests -> entries", ("libritts",)),
        "prepare normalize": Command("prepare_corpus", "check, downmix and resample every file -> cuts",
                                     ("normalize",)),
        "prepare codes": Command("compute_codes", "Encodec codes of every cut (sharded, resumable)"),
        "prepare text-tokens": Command("compute_text_tokens", "text tokens of every cut"),
        "prepare split": Command("split_cuts", "train / dev / test splits"),
        "prepare shar": Command("export_shar", "the splits as lhotse Shar shards"),
        "check-data": Command("check_data", "check a prepared corpus: flags per file, minutes per speaker"),
        "segment": Command("segment", "long recordings -> utterances for training"),
        "tokenize-text": Command("tokenize_text", "show how a tokenizer reads a text"),
    },
    "Training": {
        "train": Command("train", "fine-tune (or train) the AR or NAR half"),
        "init-checkpoint": Command("init_checkpoint", "a randomly initialised checkpoint of any size"),
        "plot-curves": Command("plot_curves", "loss and accuracy curves of the runs in a folder -> PNG"),
    },
    "Synthesis": {
        "infer": Command("infer", "speak a sentence or a list of them"),
        "make-prompt": Command("make_prompt", "a voice preset (.npz) from a recording and its transcript"),
        "serve": Command("serve", "the OpenAI-compatible speech API"),
        "app": Command("app", "the web app: data, training, synthesis in one page"),
    },
    "Quality": {
        "evaluate": Command("evaluate", "score checkpoints: speaker similarity, WER, failures -> report.html"),
    },
    "Export": {
        "export checkpoint": Command("export_checkpoint", "the released layout (.pt) or safetensors"),
        "export onnx": Command("export_onnx", "the model as ONNX for onnxruntime"),
    },
}
COMMANDS = {name: command for group in GROUPS.values() for name, command in group.items()}
PARENTS = {name.split()[0] for name in COMMANDS if " " in name}  # prepare, export: the first word of two


def usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: valle <command> [options]      (valle <command> --help: its options)"]
    for group, commands in GROUPS.items():
        lines += ["", f"{group}:"] + [f"  {name:<{width}}{c.summary}" for name, c in commands.items()]
    return "\n".join(lines)


def find(argv: list[str]) -> tuple[str, list[str]]:
    """-> (the command's name, the options after it)."""
    words = 2 if argv[0] in PARENTS else 1
    name = " ".join(argv[:words])
    if name in COMMANDS:
        return name, argv[words:]
    if argv[0] in PARENTS:
        choices = [n.split()[1] for n in COMMANDS if n.startswith(argv[0] + " ")]
        raise UserError(f"valle {name}: use valle {argv[0]} {'|'.join(choices)}")
    close = difflib.get_close_matches(name, [*COMMANDS, *PARENTS], n=1)
    hint = f"; did you mean valle {close[0]}?" if close else ""
    raise UserError(f"valle {name}: no such command{hint} (valle --help lists them)")


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, options = find(argv)
    command = COMMANDS[name]
    try:
        module = importlib.import_module(f"valle.commands.{command.module}")
    except ModuleNotFoundError as e:
        if e.name != f"valle.commands.{command.module}":
            raise  # a package the command needs: its own message says which
        raise UserError(f"valle {name}: not in this version of the toolkit (no valle.commands.{command.module})") \
            from None
    # argparse names the program after sys.argv[0]: usage lines and errors then say `valle prepare codes`
    sys.argv[0] = " ".join(["valle", *name.split()[: len(name.split()) - len(command.argv)]])
    return module.main([*command.argv, *options])


def refuse_module_run(argv: list[str]) -> None:
    """`python -m valle.commands.<module>` imports the module and runs nothing (a command's module has no
    `__main__`): a script written for the old layout would do nothing and succeed. Stop it with the command to use."""
    if "-m" not in argv[:-1]:
        return
    target = argv[argv.index("-m") + 1]
    module = target.removeprefix("valle.commands.")
    if module == target:
        return
    names = [name for name, command in COMMANDS.items() if command.module == module] or ["--help"]
    use = "|".join(names).replace(f"|{names[0].split()[0]} ", "|")  # prepare scan|libritts|...
    print(f"error: python -m {target} runs nothing: use `valle {use} ...` (`python -m valle ...` works too)",
          file=sys.stderr)
    raise SystemExit(2)


refuse_module_run(getattr(sys, "orig_argv", []))


def entry() -> None:
    """The console script `valle` (and `python -m valle`): errors as one line, exit code 2."""
    run_main(main)
