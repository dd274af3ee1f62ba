"""Files of the data folder written whole (a reader sees the old file or the new one, never half of it; a full
disk is one line), and cut manifests read back with a message saying what to run when one is missing."""

from __future__ import annotations

from pathlib import Path

from lhotse import CutSet

from valle.errors import UserError
from valle.storage import atomic_write


def write_whole(path: Path, write, what: str) -> None:
    """`atomic_write` for the files of a data stage: a full disk is one UserError saying to run the stage again."""
    atomic_write(path, write, what, "free space (or use a --data-dir on a larger disk) and run the stage again: "
                 "what was finished is kept")


def write_text(path: Path, text: str, what: str = "a report") -> None:
    write_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)


def save_cuts(cuts, path: Path) -> None:
    """Cuts (a list or a CutSet) -> a lhotse manifest, written whole (`write_whole`)."""
    write_whole(path, lambda tmp: CutSet.from_cuts(cuts).to_file(tmp), "cut manifests")


def open_cuts(path: str | Path, missing: str = "run the earlier stages of prepare.sh first") -> CutSet:
    """The cuts of a manifest, read lazily (one line at a time, whatever its size). A missing file is a UserError
    ending in `missing` (what to do); so is an empty one: no stage and no training can use it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: {missing}")
    cuts = CutSet.from_jsonl_lazy(path)
    if next(iter(cuts), None) is None:
        raise UserError(f"{path} holds no cuts: prepare the corpus again with more data")
    return cuts


def load_cuts(path: str | Path, missing: str = "run the earlier stages of prepare.sh first") -> CutSet:
    """The cuts of a manifest, in memory (`open_cuts`, read whole)."""
    return open_cuts(path, missing).to_eager()
