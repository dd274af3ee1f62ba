"""The one runner that decides whether a preparation stage runs, and the work of each stage.

The stages themselves, in order, are valle.data.stage_list's table. `run_stages` is used by every stage CLI
(which egs/*/prepare.sh call, one guarded block per stage) and by the web app's Data tab: under the data folder's
lock, a stage that finished before with the same signature is skipped; one that runs removes its marker first,
and once it has finished, those of the stages after it (so a run that fails early, e.g. on a mistyped path,
leaves the later markers alone), then writes its own (valle.markers).

`stage_run(name, data_dir, opts)` is how every caller gets a stage's signature and work from the preparation
options. Adding a stage: a `Stage` in valle.data.stage_list, its work here, its function in valle.data.pipeline,
a CLI that runs `run_stages(data_dir, [stage_run(...)])`, and a guarded block in each egs/<recipe>/prepare.sh.
Torch-free: the work imports torch only when it runs, so a stage that is skipped costs a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from valle.data.options import PrepareOptions, shell_value
from valle.data.stage_list import STAGE_NAMES, STAGES
from valle.locks import folder_lock
from valle.markers import marker_line, read_marker, write_marker


def signature(stage: str, values: dict) -> str:
    """What the stage's marker holds (valle.markers): `name=value` of its options, as the recipes write them."""
    options = STAGES[STAGE_NAMES.index(stage)].options
    return marker_line({name: None if values[name] is None else shell_value(values[name]) for name in options})


def corpus_signature(corpus: str | Path) -> str:
    """The scan stage's signature for a folder or metadata file of one's own recordings; a metadata file's also
    holds a digest of its lines, so that one edited in place (e.g. the segmenter's metadata.txt after a review) is
    read again."""
    path = os.path.realpath(corpus)
    if not os.path.isfile(path):
        return f"corpus={path}"
    with open(path, "rb") as f:
        return f"corpus={path} sha1={hashlib.sha1(f.read()).hexdigest()[:12]}"


def libritts_signature(download_dir: str | Path, parts: list[str]) -> str:
    """The scan stage's signature for LibriTTS parts unpacked in download_dir/LibriTTS."""
    return f"libritts={os.path.realpath(download_dir)} parts={' '.join(parts)}"


@dataclass
class StageRun:
    """One stage to run: its name, the signature of the options it runs with, and the work itself."""

    name: str
    signature: str
    work: Callable[[], object]
    detail: str = ""  # shown in the log line, e.g. the codec weights


def _scan(data_dir: Path, opts: PrepareOptions) -> None:
    from valle.data.pipeline import stage_scan

    stage_scan(opts.corpus, data_dir)


def _normalize(data_dir: Path, opts: PrepareOptions) -> None:
    from valle.data.normalize import NormalizeOptions
    from valle.data.pipeline import stage_normalize

    stage_normalize(data_dir, NormalizeOptions.of(opts), opts.num_jobs)


def _check(data_dir: Path, opts: PrepareOptions) -> None:
    from valle.data.check import stage_check

    stage_check(data_dir, opts.language, opts.check_asr, opts.drop_flagged)


def _codes(data_dir: Path, opts: PrepareOptions) -> None:
    from valle.codec import Codec
    from valle.data.pipeline import stage_codes
    from valle.ranks import dist_env

    me = dist_env()  # under torchrun: this rank's shards, on its own GPU
    codec = Codec.from_weights(opts.codec_weights, device=str(me.device(opts.device)),
                               max_batch_seconds=opts.batch_seconds)
    stage_codes(data_dir, codec, opts.num_workers, me.rank, me.world_size)


def _text(data_dir: Path, opts: PrepareOptions) -> None:
    from valle.data.pipeline import stage_text
    from valle.text import get_tokenizer

    symbols = {"symbols": Path(opts.symbols)} if opts.symbols else {}  # none: the corpus makes the table
    stage_text(data_dir, get_tokenizer(opts.tokenizer, **symbols), opts.language)


def _split(data_dir: Path, opts: PrepareOptions) -> None:
    from valle.data.pipeline import stage_split

    stage_split(data_dir, opts.dev_ratio, opts.test_ratio, opts.seed, opts.heldout_speakers.split())


WORK = {"scan": _scan, "normalize": _normalize, "check": _check, "codes": _codes, "text": _text, "split": _split}


def stage_run(name: str, data_dir: Path, opts: PrepareOptions) -> StageRun:
    """Stage `name` of data_dir with `opts`: its signature (the scan stage's is opts.corpus) and its work."""
    if name == "scan":
        sig, detail = corpus_signature(opts.corpus), str(opts.corpus)
    else:
        sig = signature(name, dataclasses.asdict(opts))
        detail = {"codes": f"{opts.codec_weights} weights", "text": f"{opts.tokenizer}, {opts.language}"}.get(name, "")
    return StageRun(name, sig, lambda: WORK[name](data_dir, opts), detail)


def _run_one(data_dir: Path, run: StageRun) -> str:
    n = STAGE_NAMES.index(run.name)
    stage, head, marker = STAGES[n], f"stage {n} ({run.name})", data_dir / f".{run.name}.done"
    if read_marker(marker) == run.signature:
        _log(f"{head}: done before with the same options, skipping (delete {marker} to redo)")
        return f"{head}: done before with the same options, skipped"
    _log(f"{head}: {stage.does}{f' ({run.detail})' if run.detail else ''} -> {data_dir / stage.writes}")
    marker.unlink(missing_ok=True)
    start = time.perf_counter()
    run.work()
    for later in STAGES[n + 1:]:  # a finished stage makes the later ones stale
        (data_dir / f".{later.name}.done").unlink(missing_ok=True)
    write_marker(marker, run.signature)
    return f"{head}: done in {time.perf_counter() - start:.1f} s"


def run_stages(data_dir: str | Path, runs: list[StageRun],
               progress: Callable[[float, str], None] = lambda fraction, desc: None) -> list[str]:
    """Under the data folder's lock (a UserError naming the holder when another run has it), each of `runs`
    that did not finish before with its signature. Returns one line per stage: skipped, or done in how long."""
    data_dir = Path(data_dir)
    lines = []
    with folder_lock(data_dir, "data preparation"):
        for i, run in enumerate(runs):
            progress(i / len(runs), f"stage {STAGE_NAMES.index(run.name)} ({run.name})")
            lines.append(_run_one(data_dir, run))
    progress(1.0, "done")
    return lines


def _log(line: str) -> None:
    """On stdout, as the recipe's other lines: prepare.sh shows each stage's decision in order."""
    print(f"{time.strftime('%F %T')} {line}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valle.data.stages", description="List the preparation stages.")
    parser.parse_args(argv)
    for n, s in enumerate(STAGES):
        print(f"{n} {s.name}: {s.does} -> {s.writes} ({' '.join(s.options) or 'the corpus it read'})")


if __name__ == "__main__":
    main()
