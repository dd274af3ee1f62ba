"""The Data tab: uploaded files -> a corpus folder in the workspace -> the valle.data stages -> reports.

The stages are the ones egs/custom/prepare.sh runs (scan, normalize, codes, text, split), called directly.
A finished stage leaves the same `DATA/.<stage>.done` marker, holding the same option signature, as
egs/shared/prepare_stages.sh: a rerun with the same options skips it (the page and the recipe resume each
other), and a stage that finishes invalidates the markers after it. The codes stage also resumes inside itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from valle.app.workspace import Workspace, safe_name
from valle.audio import AUDIO_EXTENSIONS
from valle.errors import UserError
from valle.locks import folder_lock

STAGES = ("corpus", "normalize", "codes", "text", "split")  # the marker names of prepare_stages.sh
METADATA_SUFFIXES = (".csv", ".tsv", ".list", ".txt")
TRANSCRIPT_SUFFIXES = (".txt", ".lab")
CODEC_CHOICES = ("pretrained", "random")


@dataclass
class PrepareOptions:
    corpus: str  # workspace-relative folder or metadata file
    data_dir: str = "data"
    language: str = "en"
    tokenizer: str = "vallex"
    codec_weights: str = "pretrained"  # pretrained | random | a file in the workspace
    min_duration: float = 0.5
    max_duration: float = 20.0
    silence_db: float = -60.0
    dev_ratio: float = 0.05
    test_ratio: float = 0.05
    seed: int = 42
    device: str = "auto"


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


def _num(x: float) -> str:
    """A number the way the recipe's options print it (20, 0.5, -60)."""
    return f"{x:g}"


def _codec_spec(ws: Workspace, weights: str) -> str:
    weights = weights.strip()
    if weights in CODEC_CHOICES:
        return weights
    return str(ws.path(weights, "codec weights", must_exist=True))


def plan_stages(opts: PrepareOptions, corpus: Path, codec: str) -> list[tuple[str, str]]:
    """(stage, signature) in order; the signatures are prepare_stages.sh's for the same options."""
    return [
        ("corpus", f"corpus={corpus}"),
        ("normalize", f"min_duration={_num(opts.min_duration)} max_duration={_num(opts.max_duration)} "
                      f"silence_db={_num(opts.silence_db)}"),
        ("codes", f"codec_weights={codec}"),
        ("text", f"tokenizer={opts.tokenizer} language={opts.language} symbols="),
        ("split", f"dev_ratio={_num(opts.dev_ratio)} test_ratio={_num(opts.test_ratio)} seed={opts.seed} "
                  "heldout_speakers="),
    ]


def _stage_runner(name: str, data_dir: Path, corpus: Path, codec: str, opts: PrepareOptions) -> Callable[[], None]:
    from valle.data import corpus as corpus_stages
    from valle.data import tokenize

    if name == "corpus":
        return lambda: corpus_stages.stage_scan(corpus, data_dir)
    if name == "normalize":
        norm = corpus_stages.NormalizeOptions(opts.min_duration, opts.max_duration, opts.silence_db)
        return lambda: corpus_stages.stage_normalize(data_dir, norm)
    if name == "codes":
        def codes():
            from valle.audio import Codec

            tokenize.stage_codes(data_dir, Codec.from_weights(codec, device=opts.device))
        return codes
    if name == "text":
        def text():
            from valle.text import get_tokenizer

            tokenize.stage_text(data_dir, get_tokenizer(opts.tokenizer), opts.language)
        return text
    return lambda: tokenize.stage_split(data_dir, opts.dev_ratio, opts.test_ratio, opts.seed)


def check_options(opts: PrepareOptions) -> None:
    if opts.language not in ("en", "zh", "ja"):
        raise UserError(f"language {opts.language!r}: the corpus language must be en, zh or ja")
    if opts.tokenizer not in ("vallex", "espeak"):
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
    from valle.data.corpus import format_summary, read_rejections

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
