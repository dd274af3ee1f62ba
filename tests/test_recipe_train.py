"""The recipes' train.sh as a user meets it: help that tells the recipe's values, one-line errors, the NAR run
that would drop the AR run refused, model sizes checked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from valle.config import ModelConfig
from valle.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CUSTOM_TRAIN = REPO / "egs" / "custom" / "train.sh"


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="the recipes use .venv (make setup)")
def test_help_names_the_recipe_and_shows_the_values_it_passes(tmp_path):
    proc = run([str(CUSTOM_TRAIN), "--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())  # argparse wraps lines
    assert out.startswith(f"usage: {CUSTOM_TRAIN} --model-name ar|nar|both")
    assert "--num-gpus N" in out and "trainer.py" not in out
    assert ("--valid-interval VALID_INTERVAL validate every N optimizer steps (and at every epoch end) "
            "(default: chosen from the data when fine-tuning (docs/training.md), else 500)") in out
    assert "(default: 5)" in out.split("--early-stop-patience EARLY_STOP_PATIENCE")[1][:200]
    assert "training" not in proc.stdout.splitlines()[-1] and not (tmp_path / "exp").exists()  # nothing started


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="the recipes use .venv (make setup)")
def test_unknown_flag_is_one_line_pointing_at_help(tmp_path):
    proc = run([str(CUSTOM_TRAIN), "--max-step", "10"], cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: unrecognized arguments: --max-step 10" in lines[0] and "--help" in lines[0]


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="the recipes use .venv (make setup)")
def test_nar_run_that_would_drop_the_ar_run_is_refused(tmp_path):
    (tmp_path / "exp" / "ar").mkdir(parents=True)
    (tmp_path / "exp" / "ar" / "best-valid-loss.pt").write_bytes(b"the fine-tuned AR")
    proc = run([str(CUSTOM_TRAIN), "--model-name", "nar", "--init-checkpoint", "none"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "exp/ar/best-valid-loss.pt holds your AR run" in proc.stderr and "--ignore-ar-run true" in proc.stderr
    assert not (tmp_path / "exp" / "nar").exists()


def test_heads_must_divide_the_width():
    with pytest.raises(UserError,
                       match=r"--nhead 5 does not divide the model width 1024 .*use one of \[1, 2, 4, 8, 16, 32\]"):
        ModelConfig(nhead=5)
    assert ModelConfig(d_model=64, nhead=4).nhead == 4


@pytest.mark.parametrize("script", ["custom/train.sh", "custom/prepare.sh", "mini/run.sh"])
def test_a_missing_environment_is_one_line_naming_make_setup(tmp_path, script):
    bare = tmp_path / "python"  # a Python without site-packages: no torch, no toolkit
    bare.write_text("#!/bin/sh\nexec python3 -S \"$@\"\n")
    bare.chmod(0o755)
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHON": str(bare)}
    proc = subprocess.run([str(REPO / "egs" / script), "--corpus", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "make setup" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
