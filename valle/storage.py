"""Writing files safely: whole or not at all (`atomic_write`, the one way every file of the toolkit that must
survive a crash is written), disk space checked before a write whose size is known, a full disk as one clear line.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from valle.errors import UserError

# A file being written by `atomic_write` is `.tmp-<pid>-<name>` next to it: the same suffix (lhotse picks a
# manifest's format from it), hidden, and recognisable (`is_partial`) when a killed run left it behind.
TMP_PREFIX = ".tmp-"
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# torch.save reports a failed write as a RuntimeError without an errno.
_DISK_FULL_TEXTS = ("No space left on device", "file write failed", "Disk quota exceeded")


def free_bytes(path: str | Path) -> int:
    """Free space on the file system that holds `path` (or would hold it: its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def human_size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(num_bytes) < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TB"


def check_free_space(path: str | Path, needed: int, what: str, fix: str) -> None:
    """UserError before writing `what` to `path` when its file system has less than `needed` bytes free."""
    free = free_bytes(path)
    if free < needed:
        raise UserError(f"not enough disk space for {what} at {path}: needs about {human_size(needed)}, "
                        f"{human_size(free)} free; {fix}")


def is_disk_full(error: BaseException | None) -> bool:
    """True when `error` (or an exception it was raised from) says the disk or the quota is full."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return True
        if any(text in str(error) for text in _DISK_FULL_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(path: str | Path, what: str, fix: str) -> UserError:
    """The one-line message for a write of `what` to `path` that failed on a full disk."""
    return UserError(f"the disk is full: writing {what} to {path} failed ({human_size(free_bytes(path))} free); "
                     f"{fix}")


def partial_path(path: Path) -> Path:
    """Where `atomic_write` builds `path` before it takes its place."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


def is_partial(path: str | Path) -> bool:
    """Whether `path` is a file `atomic_write` was building (left by a run that was killed mid-write)."""
    return Path(path).name.startswith(TMP_PREFIX)


def remove_partials(folder: Path, pattern: str = "*") -> None:
    """Delete the unfinished files (`is_partial`) named like `pattern` that killed runs left in `folder`."""
    for tmp in folder.glob(TMP_PREFIX + pattern):
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk. Windows cannot open folders: there, files only."""
    if path.is_dir() and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], what: str = "", fix: str = "") -> Path:
    """write(tmp) makes the file at a temporary path in the same folder (`partial_path`); it is synced to the
    disk, then renames onto `path`, and the folder is synced: after a crash `path` is its old self or the whole
    new file, never half of one, and no temporary file stays behind (except after a kill: `remove_partials`).
    With `what` (and `fix`, what the user should do), a full disk is one UserError naming the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if what and is_disk_full(e):
            raise disk_full_error(path, what, fix) from None
        raise
    _fsync(path.parent)
    return path


def atomic_write_folder(path: str | os.PathLike, write: Callable[[Path], None], what: str = "",
                        fix: str = "") -> Path:
    """`atomic_write` for a folder: write(tmp) fills a new temporary folder beside `path` (`partial_path`), which is
    synced and renamed onto `path`; an old folder there is first renamed aside and removed after. `path` is never
    half-written nor half-removed: after a crash it is the old folder, the new one, or absent (the old one then
    waits, whole, as `.tmp-<pid>-old-<name>`; `remove_partials` clears both leftovers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, aside = partial_path(path), partial_path(path.with_name(f"old-{path.name}"))
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        for file in tmp.rglob("*"):
            _fsync(file)
        _fsync(tmp)
        if path.exists():
            os.replace(path, aside)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if what and is_disk_full(e):
            raise disk_full_error(path, what, fix) from None
        raise
    shutil.rmtree(aside, ignore_errors=True)
    _fsync(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write` of a UTF-8 text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
