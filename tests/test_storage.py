"""valle.storage.atomic_write: a file is its old self or the whole new one, and nothing unfinished stays behind."""

import errno
import os

import pytest

from valle import storage
from valle.errors import UserError
from valle.storage import atomic_write, is_partial, partial_path, remove_partials


def test_a_write_replaces_the_file_whole_and_syncs_it_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    path = tmp_path / "sub" / "cuts.jsonl.gz"
    seen = []

    def write(tmp):
        seen.append(tmp)
        tmp.write_text("new")

    assert atomic_write(path, write) == path
    assert path.read_text() == "new" and os.listdir(path.parent) == ["cuts.jsonl.gz"]
    tmp = seen[0]
    assert tmp.parent == path.parent and tmp.name.endswith(".jsonl.gz") and is_partial(tmp) and not is_partial(path)
    assert synced == [str(tmp), str(path.parent)]  # the file's data before the rename, the folder's entry after


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("encoder crashed")])
def test_a_crash_mid_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, error):
    path = tmp_path / "last.pt"
    path.write_text("old")

    def crash(tmp):
        tmp.write_text("half a fi")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, crash)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["last.pt"]


def test_a_full_disk_is_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "codes.h5"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", full)
    with pytest.raises(UserError, match=rf"^the disk is full: writing the codes to {path} failed \(.* free\); "
                                        r"free space$"):
        atomic_write(path, lambda tmp: tmp.write_text("codes"), "the codes", "free space")
    with pytest.raises(OSError):  # without `what`, the caller reports it (the trainer says what to resume)
        atomic_write(path, lambda tmp: tmp.write_text("codes"))
    assert os.listdir(tmp_path) == []


def test_remove_partials_deletes_what_killed_runs_left_and_nothing_else(tmp_path):
    kept = [tmp_path / "last.pt", tmp_path / "notes.tmp", tmp_path / "a.tmp-1.pt"]
    left = [partial_path(tmp_path / "last.pt"), partial_path(tmp_path / "codes_all.h5")]
    for f in kept + left:
        f.write_text("x")
    remove_partials(tmp_path, "*.h5")
    assert sorted(tmp_path.iterdir()) == sorted(kept + left[:1])
    remove_partials(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
