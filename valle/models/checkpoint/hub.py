"""The released checkpoint: `--checkpoint vallex` resolved to a file, fetched once and checked by layout.

Where the file comes from, the first that has it:
  1. `cache_dir()/vallex-checkpoint.pt`: copied there by hand, fetched from a plain URL, or by an earlier version
  2. a plain URL (VALLE_CHECKPOINT_URL): `torch.hub.download_url_to_file` into that folder
  3. the Hugging Face Hub (VALLE_CHECKPOINT_REPO, VALLE_CHECKPOINT_FILENAME): `huggingface_hub`'s own cache
     (`cache_dir=` VALLE_CACHE_DIR when set, else the hub's default, HF_HUB_CACHE); a file already there is used
     without the network
A fetched file is trusted only once every key and shape is the expected model's; a wrong one is removed. With no
network the failure is said at once (a 3 s probe of the host, or HF_HUB_OFFLINE), not after a minute of retries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from valle.config import ModelConfig
from valle.models.checkpoint.formats import RELEASED_NAME, check_file, load_checkpoint
from valle.models.checkpoint.layout import verify_layout
from valle.safe_load import CheckpointError
from valle.safe_load import first_line as _first_line
from valle.storage import atomic_write

log = logging.getLogger(__name__)

RELEASED_REPO = "Plachta/VALL-E-X"
RELEASED_FILENAME = "vallex-checkpoint.pt"
# Environment variables (documented in docs/checkpoints.md) for mirrors and the cache.
ENV_CACHE_DIR = "VALLE_CACHE_DIR"
ENV_REPO = "VALLE_CHECKPOINT_REPO"
ENV_FILENAME = "VALLE_CHECKPOINT_FILENAME"
ENV_URL = "VALLE_CHECKPOINT_URL"


def cache_dir() -> Path:
    """Our folder: VALLE_CACHE_DIR, else $XDG_CACHE_HOME/valle-toolkit (~/.cache/valle-toolkit)."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "valle-toolkit"


def hub_cache_dir() -> Path | None:
    """huggingface_hub's `cache_dir`: VALLE_CACHE_DIR when set, else None (the hub's own default)."""
    value = os.environ.get(ENV_CACHE_DIR)
    return Path(value).expanduser() if value else None


class _Offline(Exception):
    """The download host cannot be reached: said at once, instead of after a minute of retries."""


def _check_reachable(url: str) -> None:
    """A quick TCP connect to the download host (3 s); HF_HUB_OFFLINE=1 means offline."""
    import socket
    import urllib.parse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise _Offline("HF_HUB_OFFLINE is set")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return  # file:// and the like: nothing to reach
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=3).close()
    except OSError as e:
        raise _Offline(f"{parts.hostname} cannot be reached: {e.strerror or e}") from None


def _verify(path: Path, expected: ModelConfig | None, name: str) -> None:
    verify_layout(load_checkpoint(path).state_dict, expected, source=f"the downloaded {name}")


def _from_url(url: str, target: Path, expected: ModelConfig | None) -> Path:
    """Download next to `target`, verify, then move it in place: `target` is only ever a verified file."""
    _check_reachable(url)

    def download(tmp: Path) -> None:
        torch.hub.download_url_to_file(url, str(tmp), progress=True)
        _verify(tmp, expected, target.name)

    atomic_write(target, download)
    log.info("saved the released checkpoint to %s", target)
    return target


def _remove_from_hub_cache(path: Path) -> None:
    """The snapshot entry and the blob it links to (a copy where links are not supported)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _from_hub(repo_id: str, filename: str, expected: ModelConfig | None) -> Path:
    import huggingface_hub

    hub_cache = hub_cache_dir()
    cached = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache)
    if isinstance(cached, str):
        return Path(cached)
    _check_reachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    got = Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=hub_cache))
    try:
        _verify(got, expected, got.name)
    except BaseException:  # a wrong (or half-checked) file never stays in the cache to be trusted later
        _remove_from_hub_cache(got)
        raise
    log.info("saved the released checkpoint to %s", got)
    return got


def resolve_checkpoint(path_or_name: str | os.PathLike, *, repo_id: str | None = None,
                       filename: str | None = None, url: str | None = None,
                       expected: ModelConfig | None = None, flag: str = "--checkpoint") -> Path:
    """PATH -> the file (checked to exist). "vallex" -> the released checkpoint: from a cache, else downloaded
    (a plain URL, or the Hugging Face Hub) and checked by layout (`expected`, default the released config:
    every key and shape) before it is trusted."""
    if str(path_or_name) != RELEASED_NAME:
        path = Path(path_or_name).expanduser()
        check_file(path)
        return path
    copied = cache_dir() / RELEASED_FILENAME
    if copied.is_file():
        return copied
    repo_id = repo_id or os.environ.get(ENV_REPO) or RELEASED_REPO
    filename = filename or os.environ.get(ENV_FILENAME) or RELEASED_FILENAME
    url = url or os.environ.get(ENV_URL) or None
    try:
        got = _from_url(url, copied, expected) if url else _from_hub(repo_id, filename, expected)
    except Exception as e:  # network, hub, disk or layout: one message saying what to do instead
        source = url or f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
        reason = str(e) if isinstance(e, (CheckpointError, _Offline)) else _first_line(e)
        scratch = f", or train from scratch with {flag} none" if flag == "--init-checkpoint" else ""
        raise CheckpointError(
            f"could not get the released VALL-E X checkpoint from {source} ({reason}). Download "
            f"{RELEASED_FILENAME} yourself (from https://huggingface.co/{RELEASED_REPO} or a mirror; set "
            f"{ENV_URL}, {ENV_REPO} or HF_ENDPOINT to use one) and pass {flag} PATH or copy it to {copied}"
            f"{scratch}") from None
    return got
