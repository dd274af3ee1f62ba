"""Files of the data folder written whole (a reader sees the old file or the new one, never half of it; a full
disk is one line), and cut manifests read back with a message saying what to run when one is missing.

Paths in a cut manifest: a file inside the data folder (the folder above the manifest's: data/audio/x.flac,
data/tokenized/codes_all.h5) is stored relative to the manifest's folder (`../audio/x.flac`, `codes_all.h5`),
and read back against it: a data folder reads the same from any working folder, on any machine that mounts it,
and after a move. Files outside it (a corpus referenced where it is) are stored as absolute paths.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from lhotse import CutSet
from lhotse.utils import fastcopy

from valle.errors import UserError
from valle.storage import atomic_write


def write_whole(path: Path, write, what: str) -> None:
    """`atomic_write` for the files of a data stage: a full disk is one UserError saying to run the stage again."""
    atomic_write(path, write, what, "free space (or use a --data-dir on a larger disk) and run the stage again: "
                 "what was finished is kept")


def write_text(path: Path, text: str, what: str = "a report") -> None:
    write_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)


def _with_paths(cut, convert: Callable[[str], str]):
    """A copy of `cut` whose audio files and codes store have their paths passed through `convert`."""
    if cut.has_recording:
        sources = [fastcopy(s, source=convert(s.source)) if s.type == "file" else s for s in cut.recording.sources]
        cut = fastcopy(cut, recording=fastcopy(cut.recording, sources=sources))
    codes = (cut.custom or {}).get("codes")
    if codes is not None:
        array = fastcopy(codes.array, storage_path=convert(codes.array.storage_path))
        cut = fastcopy(cut, custom={**cut.custom, "codes": fastcopy(codes, array=array)})
    return cut


def _stored(path: str, folder: str) -> str:
    """How a manifest in `folder` (a real path) stores `path`: relative when inside the data folder, else absolute
    (symlinks resolved on both sides: a data folder reached through a link is the folder it points to)."""
    path = os.path.realpath(path)
    return os.path.relpath(path, folder) if path.startswith(os.path.dirname(folder) + os.sep) else path


def _read(path: str, folder: str) -> str:
    """A path as stored in a manifest of `folder` -> the path to open."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(folder, path))


def save_cuts(cuts, path: Path) -> None:
    """Cuts (a list or a CutSet) -> a lhotse manifest, written whole (`write_whole`), paths inside the data folder
    relative to the manifest's folder."""
    stored = functools.partial(_stored, folder=os.path.realpath(Path(path).parent))
    write_whole(path, lambda tmp: CutSet.from_cuts(_with_paths(c, stored) for c in cuts).to_file(tmp),
                "cut manifests")


def open_cuts(path: str | Path, missing: str = "run the earlier stages of prepare.sh first") -> CutSet:
    """The cuts of a manifest, read lazily (one line at a time, whatever its size), with the paths that are stored
    relative to its folder resolved against it. A missing file is a UserError
    ending in `missing` (what to do); so is an empty one: no stage and no training can use it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: {missing}")
    read = functools.partial(_read, folder=os.path.realpath(path.parent))
    cuts = CutSet.from_jsonl_lazy(path).map(functools.partial(_with_paths, convert=read))
    if next(iter(cuts), None) is None:
        raise UserError(f"{path} holds no cuts: prepare the corpus again with more data")
    return cuts


def load_cuts(path: str | Path, missing: str = "run the earlier stages of prepare.sh first") -> CutSet:
    """The cuts of a manifest, in memory (`open_cuts`, read whole)."""
    return open_cuts(path, missing).to_eager()
