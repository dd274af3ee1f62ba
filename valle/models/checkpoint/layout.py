"""The layout of a model's tensors (names, shapes, ties) compared with a file's: strict loading with a readable
report of what is missing, unexpected, of another shape or wrongly tied, in grouped lines with hints; and the
layout check of a file against a config's model (the released one by default).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

import torch

from valle.config import ModelConfig
from valle.models.checkpoint.formats import same_tensor, strip_wrappers
from valle.models.valle import VALLE
from valle.safe_load import CheckpointError

_FIRST_INDEX = re.compile(r"\.(\d+)(?=\.|$)")
_MAX_SHAPE_LINES = 12
# (group name pattern, hint when the model has it but the checkpoint not, hint for the reverse)
_HINTS = [
    (re.compile(r"_prenet$"), "the model has a prenet the checkpoint lacks (build with --add-prenet false)",
     "the checkpoint was trained with a prenet (build with --add-prenet true)"),
    (re.compile(r"_language_embedding"), "the checkpoint has no language embedding: a monolingual VALL-E, "
     "not VALL-E X", "the checkpoint has a language embedding the model lacks"),
]


def _group_name(key: str) -> str:
    """Where a key's first numeric index starts (`ar_decoder.layers`), else its top-level module."""
    m = _FIRST_INDEX.search(key)
    return key[:m.start()] if m else key.split(".")[0]


def _ranges(numbers: Iterable[int]) -> str:
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _key_groups(keys: list[str], missing: bool) -> list[str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for k in keys:
        groups[_group_name(k)].append(k)
    lines = []
    for name, members in groups.items():
        if len(members) == 1:
            text = members[0]
        else:
            detail = f"{len(members)} tensors"
            if name.endswith("layers"):
                indices = [int(_FIRST_INDEX.search(k).group(1)) for k in members]
                detail = f"layers {_ranges(indices)}, {detail}"
            text = f"{name}.* ({detail})"
        for pattern, if_missing, if_unexpected in _HINTS:
            if pattern.search(name):
                text += f": {if_missing if missing else if_unexpected}"
        lines.append(text)
    return lines


def _shape_groups(mismatched: list[tuple[str, tuple, tuple]]) -> list[str]:
    """Collapse layer indices: one line per (key pattern, checkpoint shape, model shape)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for key, found, wanted in mismatched:
        groups[(re.sub(r"\.\d+(?=\.|$)", ".*", key), found, wanted)].append(key)
    lines = []
    for (pattern, found, wanted), keys in groups.items():
        name = keys[0] if len(keys) == 1 else f"{pattern} ({len(keys)} tensors)"
        lines.append(f"{name} checkpoint {list(found)} vs model {list(wanted)}")
    if len(lines) > _MAX_SHAPE_LINES:
        lines = lines[:_MAX_SHAPE_LINES] + [f"... and {len(lines) - _MAX_SHAPE_LINES} more"]
    return lines


def layout_report(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> list[str]:
    """The differences between two {key: shape} layouts as grouped, readable lines (empty: they agree)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [(k, tuple(found[k]), tuple(expected[k])) for k in expected
                  if k in found and tuple(found[k]) != tuple(expected[k])]
    return ([f"missing: {line}" for line in _key_groups(missing, missing=True)]
            + [f"unexpected: {line}" for line in _key_groups(unexpected, missing=False)]
            + [f"shape mismatch: {line}" for line in _shape_groups(mismatched)])


def _shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def tie_groups(model: torch.nn.Module) -> list[list[str]]:
    """Names that are one and the same Parameter (tied weights)."""
    names: dict[int, list[str]] = defaultdict(list)
    for name, p in model.named_parameters(remove_duplicate=False):
        names[id(p)].append(name)
    return [group for group in names.values() if len(group) > 1]


def _tie_report(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Tensors one Parameter in the model must have equal values in the checkpoint."""
    broken = [group for group in tie_groups(model)
              if not all(same_tensor(state_dict[group[0]], state_dict[k]) for k in group[1:])]
    if not broken:
        return []
    names = sorted({_group_name(k) + ".*" for group in broken for k in group})
    return [f"tied: {' and '.join(names)} share weights in the model but differ in the checkpoint "
            f"({len(broken)} pairs): it was trained without a shared embedding "
            "(build with --share-embedding false)"]


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str = "checkpoint") -> None:
    """load_state_dict(strict=True), but a mismatch raises CheckpointError with a grouped report."""
    state_dict = strip_wrappers(dict(state_dict))
    lines = layout_report(_shapes(model.state_dict()), _shapes(state_dict))
    lines = lines or _tie_report(model, state_dict)
    if lines:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(lines))
    model.load_state_dict(state_dict, strict=True)


# ---- the expected layout -----------------------------------------------------------------------

def expected_layout(config: ModelConfig | None = None) -> dict[str, tuple]:
    """Every key and shape of a VALLE state_dict for `config` (default: the released model); no memory used."""
    with torch.device("meta"):
        model = VALLE(config or ModelConfig())
    return _shapes(model.state_dict())


def verify_layout(state_dict: Mapping[str, torch.Tensor], config: ModelConfig | None = None,
                  source: str = "checkpoint") -> None:
    """Raise CheckpointError unless `state_dict` has exactly the keys and shapes of `config`'s model."""
    lines = layout_report(expected_layout(config), _shapes(strip_wrappers(dict(state_dict))))
    if lines:
        raise CheckpointError(f"{source} is not in the expected layout:\n  " + "\n  ".join(lines))
