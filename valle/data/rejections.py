"""What the stages of a data folder left out and why (DATA/rejected.tsv, one file per stage under reports/),
the figures of every stage (DATA/summary.json), and the summary the normalize and split stages print."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from pathlib import Path

from valle.audio import AUDIO_EXTENSIONS
from valle.data.files import write_text
from valle.data.stage_list import STAGE_NAMES
from valle.errors import UserError


@dataclass
class Rejection:
    """A file (or metadata line) left out, and why: `kind` groups the summary, `detail` says what to fix."""

    path: str
    kind: str
    detail: str

    def line(self) -> str:
        return f"{self.path}\t{self.kind}: {self.detail}".replace("\n", " ") + "\n"


def write_rejections(data_dir: Path, stage: str, rejections: list[Rejection]) -> Path:
    """Store one stage's rejections and rebuild data_dir/rejected.tsv (path<TAB>reason) from all stages."""
    reports = data_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    for later in STAGE_NAMES[STAGE_NAMES.index(stage) + 1:]:
        (reports / f"rejected_{later}.tsv").unlink(missing_ok=True)
    write_text(reports / f"rejected_{stage}.tsv", "".join(r.line() for r in rejections))
    merged = "".join((reports / f"rejected_{s}.tsv").read_text(encoding="utf-8")
                     for s in STAGE_NAMES if (reports / f"rejected_{s}.tsv").is_file())
    out = data_dir / "rejected.tsv"
    write_text(out, merged)
    return out


def read_rejections(data_dir: Path) -> list[tuple[str, str]]:
    """(path, reason) rows of data_dir/rejected.tsv."""
    path = data_dir / "rejected.tsv"
    if not path.is_file():
        return []
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def update_summary(data_dir: Path, stage: str, values: dict) -> dict:
    """Set one stage's figures in data_dir/summary.json (dropping those of later stages); return the summary."""
    path = data_dir / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for later in STAGE_NAMES[STAGE_NAMES.index(stage) + 1:]:
        summary.pop(later, None)
    summary[stage] = values
    write_text(path, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def format_summary(summary: dict, rejected: list[tuple[str, str]], data_dir: Path) -> str:
    """The human-readable report printed at the end of the normalize and split stages."""
    norm = summary.get("normalize", {})
    lines = [f"kept: {norm.get('kept', 0)} utterances, {norm.get('hours', 0):.3f} h, "
             f"{norm.get('speakers', 0)} speakers"]
    if "text" in summary:
        lines[0] += f"; {summary['text']['kept']} after text tokenization"
    reasons = collections.Counter(reason.split(":", 1)[0] for _, reason in rejected)
    lines.append(f"rejected: {sum(reasons.values())} (details: {data_dir / 'rejected.tsv'})")
    lines += [f"  {n:5d}  {kind}" for kind, n in reasons.most_common()]
    conversions = norm.get("conversions", {})
    lines.append(f"referenced: {norm.get('referenced_files', 0)} files already mono 24 kHz WAV/FLAC, used where "
                 "they are (not copied)")
    lines.append(f"converted: {norm.get('converted_files', 0)} files to mono 24 kHz "
                 f"(details: {data_dir / 'conversions.tsv'})")
    lines += [f"  {n:5d}  {what}" for what, n in conversions.items()]
    if "text" in summary:
        text = summary["text"]
        unknown = text.get("unknown_symbols", {})
        lines.append(f"text: tokenizer {text['tokenizer']}, language {text['language']}, "
                     f"{sum(unknown.values())} unknown symbol(s)" + (f": {unknown}" if unknown else ""))
    if "split" in summary:
        lines.append("split: " + ", ".join(f"{k} {v['cuts']} cuts / {v['hours']:.3f} h"
                                           for k, v in summary["split"].items()))
    return "\n".join(lines)


def require_some(kept: int, total: int, rejections: list[Rejection], what: str) -> None:
    """Only a run with nothing usable fails; the message names the main reasons."""
    if kept:
        return
    if total == 0:
        raise UserError(f"no utterances found in {what}: expected audio files ({' '.join(AUDIO_EXTENSIONS)}) with "
                        "same-stem transcripts, or a metadata file of path|text lines")
    reasons = collections.Counter(r.kind for r in rejections).most_common(3)
    why = ", ".join(f"{kind} ({n})" for kind, n in reasons)
    raise UserError(f"no usable utterances in {what}: {total} found, all rejected: {why}; see rejected.tsv")
