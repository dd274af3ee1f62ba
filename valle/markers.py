"""Done-markers: the one format of the small files that say a piece of work finished and with what.

A marker is one line of `name=value` fields (`min_duration=0.5 max_duration=20 silence_db=-60`,
`codec_weights=random cuts=12 sha1=... store_bytes=...`), written whole (`atomic_write`). The work it marks is
done when the marker's line is the one the work would write now. A file in another format, left by an older
version of the toolkit, is one log line and counts as no marker: the work runs again.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from valle.storage import atomic_write

log = logging.getLogger(__name__)

_FORMAT = re.compile(r"[a-z_]+=")  # a marker line starts with its first field's name


def marker_line(fields: dict) -> str:
    """{name: value} -> `name=value name=value` (None is written as nothing)."""
    return " ".join(f"{name}={'' if value is None else value}" for name, value in fields.items())


def write_marker(path: Path, line: str) -> None:
    """The marker at `path`, holding `line`, written whole."""
    atomic_write(path, lambda tmp: tmp.write_text(line + "\n", encoding="utf-8"), "a done-marker",
                 "free space and run the work again: what was finished is kept")


def read_marker(path: Path) -> str | None:
    """The line of the marker at `path`; None when there is none, or when an older version wrote it in another
    format (said in one log line: the work it marked runs again)."""
    if not path.is_file():
        return None
    line = path.read_text(encoding="utf-8", errors="replace").rstrip("\n")
    if not _FORMAT.match(line) or "\n" in line:
        log.warning("%s was written by an older version of the toolkit: running that work again", path)
        return None
    return line
