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
INHERITED_FD_ENV = "VALLE_LOCK_FD"  # set by a recipe script that holds a lock for its commands


def lock_holder(folder: str | Path) -> str:
    """Who holds (or last held) the lock of `folder`, as written by `folder_lock`."""
    try:
        return (Path(folder) / LOCK_NAME).read_text().strip() or "another process"
    except OSError:
        return "another process"


def _take(fd: int, folder: Path, what: str, pid: int, command: str) -> None:
    """flock `fd` without waiting and record the holder in it; UserError naming the holder when it is taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"{folder} is in use by {lock_holder(folder)}: wait for that {what} to finish, "
                        "or use another folder") from None
    holder = f"pid {pid} on {socket.gethostname()} since {time.strftime('%F %T')}: {command[:200]}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode() + b"\n", 0)


def _inherited(folder: Path) -> bool:
    """True when this process runs under a recipe script that holds `folder`'s lock: the script locked an open
    descriptor of folder/.lock, which its commands inherit (its number in $VALLE_LOCK_FD). A flock belongs to the
    open file, so locking that descriptor again succeeds at once, and fails when it is not the held lock."""
    try:
        fd = int(os.environ[INHERITED_FD_ENV])
        if not os.path.samestat(os.fstat(fd), os.stat(folder / LOCK_NAME)):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except (KeyError, ValueError, OSError):
        return False


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str):
    """Hold `folder`'s lock while the block runs; UserError at once when another process holds it.

    `what` names the job in the message, e.g. "data preparation" or "training". A process started by a recipe
    script that holds the lock (`_inherited`) runs under the script's lock instead of refusing itself.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if _inherited(folder):
        yield
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _take(fd, folder, what, os.getpid(), " ".join(sys.argv))
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def main(argv: list[str] | None = None) -> int:
    """`python -m valle.locks FD FOLDER WHAT COMMAND...`, for shell scripts: lock the descriptor FD that the
    calling shell opened on FOLDER/.lock (`exec 9<>FOLDER/.lock`) and record the shell as the holder. The shell,
    and every command it runs, then holds the lock until the last of them exits; they export VALLE_LOCK_FD=FD."""
    fd, folder, what, *command = sys.argv[1:] if argv is None else argv
    try:
        _take(int(fd), Path(folder), what, os.getppid(), " ".join(command))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
