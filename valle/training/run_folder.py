"""The experiment folder: one run per folder, its checkpoints pruned, its logs never mixed with another run's."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

from valle.errors import UserError
from valle.safe_load import torch_load
from valle.storage import TMP_PREFIX, atomic_write_text, human_size

log = logging.getLogger("valle.trainer")

CHECKPOINT_PATTERNS = ("last.pt", "best-valid-loss.pt", "best-eval.pt", "checkpoint-*.pt", "epoch-*.pt")
METRICS = Path("log") / "metrics.jsonl"
PLAN = "plan.json"  # the settings chosen from the data (valle/plan.py) and why
VERDICT = "verdict.json"  # the evaluation probe's last word: did fine-tuning beat the released model?
# What a run writes, deleted by --overwrite (never anything else the user keeps in the folder).
_RUN_OUTPUTS = (*CHECKPOINT_PATTERNS, TMP_PREFIX + "*", "config.yaml", PLAN, VERDICT, "log", "tensorboard")


def previous_run(exp_dir: Path) -> list[Path]:
    """The checkpoints and metrics an earlier run left in `exp_dir` (empty: the folder holds no run)."""
    found = [f for pattern in CHECKPOINT_PATTERNS for f in sorted(exp_dir.glob(pattern))]
    metrics = exp_dir / METRICS
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append(metrics)
    return found


def claim(exp_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an earlier one unless --overwrite; with it, delete the earlier run."""
    found = previous_run(exp_dir)
    if resume or not found:
        return
    if not overwrite:
        names = ", ".join(f.name for f in found[:3]) + (", ..." if len(found) > 3 else "")
        raise UserError(f"{exp_dir} holds a run ({names}): --resume true to continue it, --overwrite true to "
                        "delete it and start over, or another --exp-dir")
    for pattern in _RUN_OUTPUTS:
        for f in exp_dir.glob(pattern):
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    log.info("--overwrite: deleted the earlier run in %s", exp_dir)


def best_loss_on_disk(exp_dir: Path) -> float:
    """The valid loss of exp_dir/best-valid-loss.pt (inf when there is none). A run resumed from a last.pt
    older than the best file must not replace that best with a worse model."""
    path = exp_dir / "best-valid-loss.pt"
    if not path.is_file():
        return math.inf
    state = torch_load(path)  # data only; mmap: the weights stay on disk
    return float(((state.get("train_state") or {}).get("progress") or {}).get("best_valid_loss", math.inf))


def truncate_metrics(exp_dir: Path, step: int) -> None:
    """Drop the metrics.jsonl records logged after `step` (a resumed run logs those steps again)."""
    path = exp_dir / METRICS
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))


def prune(exp_dir: Path, prefix: str, keep: int) -> None:
    """Keep the newest `keep` files `<prefix>-<n>.pt` (by n); delete the rest."""
    files = sorted(exp_dir.glob(f"{prefix}-*.pt"), key=lambda f: int(f.stem.rsplit("-", 1)[1]))
    for old in files[:max(len(files) - keep, 0)]:
        old.unlink()


def folder_size(folder: Path) -> str:
    return human_size(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()))


def write_json(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def read_json(path: Path) -> dict | None:
    """A record write_json wrote (None: there is none, or it cannot be read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def unbeaten_verdict(exp_dir: Path) -> str | None:
    """The probe's verdict of the run in `exp_dir` when fine-tuning did not beat the model it started from;
    None otherwise (beaten, never probed, or no run there)."""
    record = read_json(exp_dir / VERDICT)
    return None if record is None or record.get("beaten", True) else record.get("verdict")
