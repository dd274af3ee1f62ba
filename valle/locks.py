"""One process at a time per data or experiment folder.

`folder_lock(folder, what)` holds an exclusive `fcntl.flock` on `folder/.lock` for the duration of a
`with` block. The kernel releases it when the process ends in any way (even SIGKILL), so a crash never
leaves a stale lock; the file itself stays and records the last holder (pid, host, command) so that a
second process can say who holds the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from valle.errors import UserError

LOCK_NAME = ".lock"


def lock_holder(folder: str | Path) -> str:
    """Who holds (or last held) the lock of `folder`, as written by `folder_lock`."""
    try:
        return (Path(folder) / LOCK_NAME).read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str):
    """Hold `folder`'s lock while the block runs; UserError at once when another process holds it.

    `what` names the job in the message, e.g. "data preparation" or "training".
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{folder} is in use by {lock_holder(folder)}: wait for that {what} to finish, "
                            "or use another folder") from None
        holder = (f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%F %T')}: "
                  f"{' '.join(sys.argv)[:200]}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
