"""Disk space: check before a write whose size is known, and turn a full disk into one clear line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from valle.errors import UserError

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
