"""The Data tab's "Long recordings": uploaded recordings -> valle.data.segment -> an editable table -> the
kept segments' metadata.txt, which the Prepare button then prepares like any corpus."""

from __future__ import annotations

from pathlib import Path

from valle.app.workspace import Workspace, safe_name
from valle.data.segment.cuts import CutOptions
from valle.data.segment.pipeline import SegmentOptions, save_edits, segment_recordings
from valle.data.segment.review import read_tsv
from valle.errors import UserError

COLUMNS = ["keep", "text", "id", "start", "end", "speaker", "speaker score", "confidence", "flags"]
EDITABLE = ("keep", "text")


def table(out_dir: Path) -> list[list]:
    """The rows of out_dir/segments.tsv as the page shows them (COLUMNS)."""
    return [[s.keep, s.text, s.id, round(s.start, 2), round(s.end, 2), s.speaker, round(s.speaker_score, 2),
             round(s.confidence, 2), s.flags] for s in read_tsv(out_dir / "segments.tsv")]


def run_segment(ws: Workspace, uploads: list[str], name: str, reference: str | None, num_speakers: int,
                transcribe: str, language: str, segment_max: float) -> tuple[str, list[str], list[list]]:
    """Copy the uploads to uploads/<name>_long/ and segment them into segments/<name>/.

    -> (the output folder, workspace-relative; what the run did; the table)."""
    if not uploads:
        raise UserError("no recordings uploaded: drop long recordings (and, for known text, a same-name .txt)")
    name = safe_name(name or "my_voice")
    folder = ws.path(Path("uploads") / f"{name}_long", "upload folder")
    for u in uploads:
        ws.take_upload(u, folder)
    ref = ws.take_upload(reference, ws.path("uploads", "upload folder"), f"{name}_reference.wav") if reference else None
    out_dir = ws.path(Path("segments") / name, "segments folder")
    opts = SegmentOptions(CutOptions(segment_max=_number(segment_max, "--segment-max")), transcribe,
                          language=language, keep_speaker=ref, num_speakers=_whole(num_speakers, "--num-speakers"))
    result = segment_recordings([folder], out_dir, opts)
    return ws.relative(out_dir), result.lines + result.set_aside, table(out_dir)


def _number(value, flag: str) -> float:
    """A page field as a number (SegmentOptions then checks its range, as for the command's flag)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} {value!r}: need a number") from None


def _whole(value, flag: str) -> int:
    number = _number(value if value not in (None, "") else 0, flag)
    if not number.is_integer():
        raise UserError(f"{flag} {value}: need a whole number")
    return int(number)


def apply_table(ws: Workspace, out_dir: str, rows: list[list]) -> str:
    """Write the page's edits (keep, text) to segments.tsv and the outputs; -> the metadata file to prepare."""
    folder = ws.path(out_dir, "segments folder", must_exist=True)
    segments = {s.id: s for s in read_tsv(folder / "segments.tsv")}
    for row in rows:
        values = dict(zip(COLUMNS, row))
        seg = segments.get(str(values["id"]))
        if seg is None:
            raise UserError(f"row {values['id']!r} is not in {out_dir}/segments.tsv: segment again")
        keep = str(values["keep"]).strip().lower()
        if keep not in ("yes", "no"):
            raise UserError(f"{seg.id}: keep is {values['keep']!r}; write yes or no")
        seg.keep, seg.text = keep, " ".join(str(values["text"]).split())
    save_edits(folder, list(segments.values()))
    return ws.relative(folder / "metadata.txt")


def clip(ws: Workspace, out_dir: str, segment_id: str) -> Path:
    """The clip of one row, to play."""
    return ws.path(Path(out_dir) / "clips" / f"{safe_name(segment_id)}.wav", "clip", must_exist=True)
