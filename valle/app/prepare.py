"""The Data tab: uploaded files -> a corpus folder in the workspace -> the valle.data stages -> reports.

The stages are the ones egs/custom/prepare.sh runs (valle.data.stages: scan, normalize, check, codes, text, split),
called directly, with the same options and defaults (valle.data.options.PrepareOptions), through the same
runner as the recipe's stage CLIs (valle.data.stages.run_stages): the same `DATA/.<stage>.done` markers and
signatures, so a rerun with the same options skips a stage (the page and the recipe resume each other), and the
same data lock. The codes stage also resumes inside itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from valle.app.workspace import Workspace, safe_name
from valle.audio import AUDIO_EXTENSIONS
from valle.data import stages
from valle.data.options import PrepareOptions
from valle.errors import UserError

STAGES = stages.STAGE_NAMES  # in order
METADATA_SUFFIXES = (".csv", ".tsv", ".list", ".txt")
TRANSCRIPT_SUFFIXES = (".txt", ".lab")
CODEC_CHOICES = ("pretrained", "random")


@dataclass
class PrepareResult:
    summary_text: str  # the report the recipe prints (format_summary)
    rejected: list[tuple[str, str]]  # (file, reason) rows of rejected.tsv
    conversions: list[tuple[str, str]]  # (file, what was done) rows of conversions.tsv
    stages: list[str]  # one line per stage: ran or skipped
    verdict: str = ""  # the data check's one line (check.json)
    flagged: list[tuple[str, str]] = field(default_factory=list)  # (file, flags) rows of check.json


def import_uploads(ws: Workspace, uploads: list[str], name: str) -> str:
    """Copy uploaded audio + transcripts (or one metadata file + its audio) into `uploads/<name>/`.

    Returns the workspace-relative corpus to prepare: the folder, or the metadata file when one was uploaded.
    """
    if not uploads:
        raise UserError("no files uploaded: drop audio files with same-name .txt transcripts (or a metadata "
                        "file of path|text lines with its audio) into the upload box")
    folder = ws.path(Path("uploads") / safe_name(name or "my_voice"), "corpus name")
    copied = [ws.take_upload(u, folder) for u in uploads]
    audio_stems = {p.stem for p in copied if p.suffix.lower() in AUDIO_EXTENSIONS}
    metadata = [p for p in copied if p.suffix.lower() in METADATA_SUFFIXES and p.stem not in audio_stems
                and "|" in p.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]]
    if len(metadata) > 1:
        raise UserError(f"{len(metadata)} metadata files uploaded ({', '.join(p.name for p in metadata)}): "
                        "upload one, or audio files with same-name transcripts and no metadata file")
    return ws.relative(metadata[0] if metadata else folder)


def _codec_spec(ws: Workspace, weights: str) -> str:
    weights = weights.strip()
    if weights in CODEC_CHOICES:
        return weights
    return str(ws.path(weights, "codec weights", must_exist=True))


def run_prepare(ws: Workspace, opts: PrepareOptions,
                progress: Callable[[float, str], None] = lambda fraction, desc: None) -> PrepareResult:
    """Run every stage not already done with the same options (checked when `opts` was made: PrepareOptions), under
    the data folder's lock."""
    if not opts.corpus.strip():
        raise UserError("corpus: give a folder of audio + transcripts, or a metadata file")
    corpus = ws.path(opts.corpus, "corpus", must_exist=True)
    data_dir = ws.path(opts.data_dir, "data folder")
    codec = _codec_spec(ws, opts.codec_weights)
    resolved = replace(opts, corpus=str(corpus), codec_weights=codec)
    lines = stages.run_stages(data_dir, [stages.stage_run(name, data_dir, resolved) for name in STAGES], progress)
    result = read_reports(ws, data_dir)
    result.stages = lines
    return result


def read_reports(ws: Workspace, data_dir: Path) -> PrepareResult:
    """The summary, the two report tables and the data check of a data folder (empty when it was never
    prepared)."""
    from valle.data.check import flagged_rows
    from valle.data.rejections import format_summary, read_rejections

    def shown(path: str) -> str:  # workspace-relative where possible: shorter, and no home folder in screenshots
        return ws.relative(Path(path)) if Path(path).is_absolute() else path

    summary_file = data_dir / "summary.json"
    if not summary_file.is_file():
        return PrepareResult("", [], [], [])
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    rejections = read_rejections(data_dir)
    rejected = [(shown(p), r) for p, r in rejections]
    conv_file = data_dir / "conversions.tsv"
    conversions = [tuple(line.split("\t", 1)) for line in conv_file.read_text(encoding="utf-8").splitlines()
                   if "\t" in line] if conv_file.is_file() else []
    text = format_summary(summary, rejections, Path(ws.relative(data_dir)))
    verdict, flagged = flagged_rows(data_dir)
    return PrepareResult(text, rejected, [(shown(p), d) for p, d in conversions], [],
                         verdict.replace(str(data_dir), ws.relative(data_dir)), [(shown(p), f) for p, f in flagged])
