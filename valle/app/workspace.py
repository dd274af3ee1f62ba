"""The one folder the page may read and write: every path typed into it is resolved inside this root."""

from __future__ import annotations

import shutil
from pathlib import Path

from valle.errors import UserError


class Workspace:
    """A root folder; `path()` turns what the user typed into a path inside it (or a UserError)."""

    def __init__(self, root: str | Path, max_upload_mb: float = 500.0):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise UserError(f"--workspace {root}: no such folder; create it or pass another one")
        self.root = root.resolve()
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)

    def path(self, typed: str | Path, what: str, must_exist: bool = False) -> Path:
        """`typed` relative to the root (or absolute, but inside it), symlinks resolved. `what` names the
        field in the message."""
        text = str(typed).strip()
        if not text:
            raise UserError(f"{what}: empty; type a path inside the workspace {self.root}")
        resolved = (self.root / Path(text).expanduser()).resolve()
        if not resolved.is_relative_to(self.root):
            raise UserError(f"{what} {text!r} is outside the workspace {self.root}: use a path inside it "
                            "(relative paths start there)")
        if must_exist and not resolved.exists():
            raise UserError(f"{what} {text!r}: {resolved} does not exist")
        return resolved

    def relative(self, path: Path) -> str:
        """How a path is shown in the page: relative to the workspace when inside it (a symlinked folder in the
        workspace counts as inside), else in full."""
        for candidate in (Path(path).absolute(), Path(path).resolve()):
            if candidate.is_relative_to(self.root):
                return str(candidate.relative_to(self.root))
        return str(path)

    def find(self, patterns: tuple[str, ...], limit: int = 200) -> list[str]:
        """Workspace-relative paths of files matching any glob pattern (newest first), hidden folders skipped."""
        found = {p for pattern in patterns for p in self.root.glob(pattern)
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts)}
        newest = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
        return [self.relative(p) for p in newest[:limit]]

    def take_upload(self, upload: str | Path, dest_dir: Path, name: str | None = None) -> Path:
        """Copy an uploaded temporary file into `dest_dir` (inside the workspace) after checking its size."""
        upload = Path(upload)
        size = upload.stat().st_size
        if size > self.max_upload_bytes:
            raise UserError(f"upload {name or upload.name}: {size / 2**20:.1f} MB is over the limit of "
                            f"{self.max_upload_bytes / 2**20:.0f} MB (valle app --max-upload-mb); put large "
                            "corpora in the workspace folder and type their path instead")
        dest = dest_dir / safe_name(name or upload.name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(upload, dest)
        return dest


def safe_name(name: str) -> str:
    """A file or folder name the user typed or uploaded, without any path part."""
    base = Path(str(name).replace("\\", "/")).name.strip()
    if not base or base in (".", "..") or base.startswith("."):
        raise UserError(f"name {name!r} cannot be a file name; use letters, digits, - and _")
    return base
