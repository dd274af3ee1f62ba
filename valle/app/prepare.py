"""The Data tab: uploaded files -> a corpus folder in the workspace -> the valle.data stages -> reports.

The stages are the ones egs/custom/prepare.sh runs (valle.data.stages: corpus, normalize, codes, text, split),
called directly, with the same options and defaults (valle.data.options.PrepareOptions).
A finished stage leaves the same `DATA/.<stage>.done` marker, holding the same option signature, as
egs/shared/prepare_stages.sh: a rerun with the same options skips it (the page and the recipe resume each
other), and a stage that finishes invalidates the markers after it. The codes stage also resumes inside itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from valle.app.workspace import Workspace, safe_name
from valle.audio import AUDIO_EXTENSIONS
from valle.config import LANGUAGES, or_list
from valle.data import stages
from valle.data.options import PrepareOptions
from valle.errors import UserError
from valle.locks import folder_lock
from valle.text import TOKENIZER_NAMES

STAGES = stages.STAGE_NAMES  # the marker names of prepare_stages.sh, in order
METADATA_SUFFIXES = (".csv", ".tsv", ".list", ".txt")
TRANSCRIPT_SUFFIXES = (".txt", ".lab")
CODEC_CHOICES = ("pretrained", "random")


@dataclass
class PrepareResult:
    summary_text: str  # the report the recipe prints (format_summary)
    rejected: list[tuple[str, str]]  # (file, reason) rows of rejected.tsv
    conversions: list[tuple[str, str]]  # (file, what was done) rows of conversions.tsv
    stages: list[str]  # one line per stage: ran or skipped


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


def plan_stages(opts: PrepareOptions, corpus: Path, codec: str) -> list[tuple[str, str]]:
    """(stage, signature) in order; the signatures are prepare_stages.sh's for the same options (the corpus
    stage's is the custom recipe's)."""
    values = {**asdict(opts), "codec_weights": codec}
    return [("corpus", f"corpus={corpus}")] + [(stage.name, stages.signature(stage, values)) for stage in stages.STAGES[1:]]


def _stage_runner(name: str, data_dir: Path, corpus: Path, codec: str, opts: PrepareOptions) -> Callable[[], None]:
    from valle.data import pipeline
    from valle.data.normalize import NormalizeOptions

    if name == "corpus":
        return lambda: pipeline.stage_scan(corpus, data_dir)
    if name == "normalize":
        return lambda: pipeline.stage_normalize(data_dir, NormalizeOptions.of(opts), opts.num_jobs)
    if name == "codes":
        def codes():
            from valle.audio import Codec

            codec_ = Codec.from_weights(codec, device=opts.device, max_batch_seconds=opts.batch_seconds)
            pipeline.stage_codes(data_dir, codec_, opts.num_workers)
        return codes
    if name == "text":
        def text():
            from valle.text import get_tokenizer

            symbols = {"symbols": Path(opts.symbols)} if opts.symbols else {}
            pipeline.stage_text(data_dir, get_tokenizer(opts.tokenizer, **symbols), opts.language)
        return text
    return lambda: pipeline.stage_split(data_dir, opts.dev_ratio, opts.test_ratio, opts.seed,
                                        opts.heldout_speakers.split())


def check_options(opts: PrepareOptions) -> None:
    if not opts.corpus.strip():
        raise UserError("corpus: give a folder of audio + transcripts, or a metadata file")
    if opts.language not in LANGUAGES:
        raise UserError(f"language {opts.language!r}: the corpus language must be {or_list(LANGUAGES)}")
    if opts.tokenizer not in TOKENIZER_NAMES:
        raise UserError(f"tokenizer {opts.tokenizer!r}: use vallex (fine-tuning) or espeak (training from scratch)")
    if not 0 < opts.min_duration < opts.max_duration:
        raise UserError(f"durations {opts.min_duration}..{opts.max_duration} s: need 0 < min < max")


def run_prepare(ws: Workspace, opts: PrepareOptions,
                progress: Callable[[float, str], None] = lambda fraction, desc: None) -> PrepareResult:
    """Run every stage not already done with the same options, under the data folder's lock."""
    check_options(opts)
    corpus = ws.path(opts.corpus, "corpus", must_exist=True)
    data_dir = ws.path(opts.data_dir, "data folder")
    codec = _codec_spec(ws, opts.codec_weights)
    lines = []
    with folder_lock(data_dir, "data preparation"):
        plan = plan_stages(opts, corpus, codec)
        for i, (name, signature) in enumerate(plan):
            marker = data_dir / f".{name}.done"
            if marker.is_file() and marker.read_text(encoding="utf-8").rstrip("\n") == signature:
                lines.append(f"stage {i} ({name}): done before with the same options, skipped")
                continue
            progress(i / len(plan), f"stage {i} ({name})")
            marker.unlink(missing_ok=True)
            start = time.perf_counter()
            _stage_runner(name, data_dir, corpus, codec, opts)()
            for later, _ in plan[i + 1:]:  # a finished stage makes the later ones stale
                (data_dir / f".{later}.done").unlink(missing_ok=True)
            marker.write_text(signature + "\n", encoding="utf-8")
            lines.append(f"stage {i} ({name}): done in {time.perf_counter() - start:.1f} s")
        progress(1.0, "done")
    result = read_reports(ws, data_dir)
    result.stages = lines
    return result


def read_reports(ws: Workspace, data_dir: Path) -> PrepareResult:
    """The summary and the two report tables of a data folder (empty when it was never prepared)."""
    from valle.data.reports import format_summary, read_rejections

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
    return PrepareResult(text, rejected, [(shown(p), d) for p, d in conversions], [])
