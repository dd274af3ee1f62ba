"""segments.tsv (the reviewed list: the user edits text and keep) and review.html (a player per segment).

A rerun reads segments.tsv back and keeps every edit: rows are never regenerated for a recording that has rows.
"""

from __future__ import annotations

import csv
import html
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from valle.data.files import write_text
from valle.errors import UserError


@dataclass
class Segment:
    id: str  # <recording stem>_<start ms>-<end ms>: the clip is clips/<id>.wav
    file: str  # the source recording
    start: float  # seconds into it, silence before the speech included
    end: float
    speaker: str  # the recording's stem, or the cluster label with --num-speakers
    speaker_score: float  # similarity to --keep-speaker's reference (NaN without one)
    confidence: float  # mean word probability (ASR), 1 for aligned or known text, NaN when not transcribed
    flags: str  # space-separated reasons to leave it out (empty: none)
    keep: str  # yes / no: the user's word is final
    text: str  # what is trained (edit it)
    original: str = ""  # the text as written in the source (aligned text), before normalization

    @property
    def seconds(self) -> float:
        return self.end - self.start


COLUMNS = [f.name for f in fields(Segment)]


def _clean(value: str) -> str:
    return " ".join(str(value).replace("|", " ").split())  # no tabs or newlines; '|' would break the metadata


def write_tsv(path: Path, segments: list[Segment]) -> None:
    rows = ["\t".join(COLUMNS)]
    for s in segments:
        row = asdict(s)
        row.update(start=f"{s.start:.3f}", end=f"{s.end:.3f}", speaker_score=f"{s.speaker_score:.3f}",
                   confidence=f"{s.confidence:.3f}", text=_clean(s.text), original=_clean(s.original))
        rows.append("\t".join(str(row[c]) for c in COLUMNS))
    write_text(path, "\n".join(rows) + "\n", "segments.tsv")


def read_tsv(path: Path) -> list[Segment]:
    """The rows as the user left them; a bad row is an error naming its line (never dropped silently)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = set(COLUMNS) - set(reader.fieldnames or ()) - {"original"}
        if missing:
            raise UserError(f"{path}: header lacks {', '.join(sorted(missing))}; expected {' '.join(COLUMNS)}")
        out = []
        for n, row in enumerate(reader, 2):
            keep = (row.get("keep") or "").strip().lower()
            if keep not in ("yes", "no"):
                raise UserError(f"{path}:{n}: keep is {row.get('keep')!r}; write yes or no")
            try:
                out.append(Segment(row["id"], row["file"], float(row["start"]), float(row["end"]), row["speaker"] or "",
                                   float(row["speaker_score"]), float(row["confidence"]), row["flags"] or "", keep,
                                   " ".join((row["text"] or "").split()), row.get("original") or ""))
            except (TypeError, ValueError) as e:
                raise UserError(f"{path}:{n}: {e}; fix or delete the line") from None
    return out


def write_html(path: Path, segments: list[Segment], clips: str = "clips") -> None:
    """A table with a player per segment (clips/<id>.wav), its text, scores and flags; kept rows first."""
    rows = []
    for s in sorted(segments, key=lambda s: (s.keep != "yes", s.file, s.start)):
        rows.append(
            f"<tr class='{s.keep}'><td>{html.escape(s.id)}<br><small>{html.escape(Path(s.file).name)} "
            f"{s.start:.2f}-{s.end:.2f} s</small></td>"
            f"<td><audio controls preload='none' src='{clips}/{html.escape(s.id)}.wav'></audio></td>"
            f"<td>{html.escape(s.text)}</td><td>{html.escape(s.speaker)}</td><td>{s.speaker_score:.2f}</td>"
            f"<td>{s.confidence:.2f}</td><td>{html.escape(s.flags)}</td><td>{s.keep}</td></tr>")
    kept = sum(s.keep == "yes" for s in segments)
    page = f"""<!doctype html><meta charset="utf-8"><title>Segments</title>
<style>body{{font-family:sans-serif}} td{{padding:2px 6px;border-bottom:1px solid #ddd}} tr.no{{color:#888}}</style>
<h1>Segments: {kept} kept of {len(segments)}</h1>
<p>Edit segments.tsv (text, keep = yes/no) next to this page and run the segmenter again: your edits are kept.</p>
<table><tr><th>segment</th><th>listen</th><th>text</th><th>speaker</th><th>speaker score</th><th>confidence</th>
<th>flags</th><th>keep</th></tr>
{chr(10).join(rows)}
</table>
"""
    write_text(path, page, "review.html")
