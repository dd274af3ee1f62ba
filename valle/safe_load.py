"""Reading torch files as data only: `torch.load(weights_only=True)` with a small allow-list of plain classes.
A file that would need anything else (a function, a class to build) is refused in one line before any of it runs."""

from __future__ import annotations

import functools
import pickle
import re
import warnings
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import torch

from valle.errors import UserError


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file and the fix."""


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> list:
    """Plain-data classes that real checkpoints pickle. Paths become pure paths (readable on any OS)."""
    allowed = [(pure, f"{module}.{name}") for module in ("pathlib", "pathlib._local")
               for pure, names in ((PurePosixPath, ("PosixPath", "PurePosixPath")),
                                   (PureWindowsPath, ("WindowsPath", "PureWindowsPath")))
               for name in names]
    scalar = (getattr(np, "_core", None) or np.core).multiarray.scalar
    allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
                (np.dtype, "numpy.dtype")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype by its class
    if dtypes is not None:
        allowed += [getattr(dtypes, f"{t}DType") for t in ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8",
                                                           "UInt16", "UInt32", "UInt64", "Float16",
                                                           "Float32", "Float64")]
    return allowed


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def torch_load(path: Path) -> object:
    """torch.load with weights_only=True; mmap for zip files so the weights need not sit in RAM twice."""
    try:
        with torch.serialization.safe_globals(_allowed_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        wanted = re.search(r"GLOBAL (\S+)", str(e))
        if wanted:
            raise CheckpointError(
                f"{path}: refused: reading it would need the Python object {wanted.group(1)}, which a checkpoint "
                "never needs (allowed: tensors, numbers, strings, lists, dicts, paths, numpy scalars); "
                "nothing from the file was run") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"({detail.group(1) if detail else first_line(e)}): the file is truncated or "
                              "corrupt, or not a checkpoint; nothing from it was run") from None
    except MemoryError:
        raise
    except Exception as e:  # torch/zip/pickle raise many types for a damaged file; all mean the same here
        raise CheckpointError(f"{path}: cannot read it as a PyTorch checkpoint ({first_line(e)}): "
                              "the file is truncated or corrupt, download or copy it again") from None
