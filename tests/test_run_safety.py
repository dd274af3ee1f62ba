"""An experiment folder holds one run: reruns refuse without consent, a second trainer waits its turn,
a full disk is one line and the run resumes, checkpoints are pruned, a worse model never replaces the best."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from valle.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
from valle.errors import UserError
from valle.storage import is_partial
from valle.training import run_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def init_tiny(tmp_path_factory) -> Path:
    from valle.models.checkpoint import save_checkpoint
    from valle.models.valle import VALLE

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("init") / "init-tiny.pt"
    save_checkpoint(path, VALLE(ModelConfig(d_model=64, nhead=4, num_layers=2)))
    return path


def experiment(data: Path, exp: Path, init: Path, **train) -> ExperimentConfig:
    return ExperimentConfig(ModelConfig(), DataConfig(manifest_dir=str(data), num_workers=0, max_duration=12,
                                                      num_buckets=2),
                            OptimConfig(), TrainConfig(exp_dir=str(exp), init_checkpoint=str(init), device="cpu",
                                                       model_name="ar", log_interval=1, **train))


def train(cfg: ExperimentConfig):
    from valle.training.trainer import Trainer

    return Trainer(cfg, {}).fit()


def test_rerun_without_resume_refuses_and_keeps_the_best(mini_data, init_tiny, tmp_path):
    exp = tmp_path / "exp"
    train(experiment(mini_data, exp, init_tiny, max_steps=3, valid_interval=3))
    best = (exp / "best-valid-loss.pt").read_bytes()
    records = (exp / "log" / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match=r"holds a run .*--resume true.*--overwrite true.*another --exp-dir"):
        train(experiment(mini_data, exp, init_tiny, max_steps=2))
    assert (exp / "best-valid-loss.pt").read_bytes() == best
    assert (exp / "log" / "metrics.jsonl").read_text() == records

    train(experiment(mini_data, exp, init_tiny, max_steps=2, valid_interval=2, overwrite=True))
    steps = [json.loads(line)["step"] for line in (exp / "log" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2 and steps.count(0) == 1  # the new run's records only
    assert (exp / "best-valid-loss.pt").read_bytes() != best


def test_second_training_in_one_folder_names_the_holder(mini_data, init_tiny, tmp_path):
    exp = tmp_path / "exp"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from valle.locks import folder_lock\n"
         "with folder_lock(sys.argv[1], 'training'):\n    print('held', flush=True); time.sleep(60)", str(exp)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"{exp} is in use by pid {holder.pid} .*wait for that training"):
            train(experiment(mini_data, exp, init_tiny, max_steps=1))
    finally:
        holder.kill()
        holder.wait()
    train(experiment(mini_data, exp, init_tiny, max_steps=1))  # the lock died with its process
    assert (exp / "last.pt").is_file()


def test_disk_full_while_saving_is_one_line_and_resume_continues(mini_data, init_tiny, tmp_path, monkeypatch):
    from valle.models.checkpoint import export

    exp = tmp_path / "exp"
    real_save, calls = torch.save, {"n": 0}

    def full_disk_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # best at step 0, checkpoint-2 and last.pt at step 2, then the disk is full
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing "
                               "file data/12: file write failed")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(export.torch, "save", full_disk_save)
    cfg = experiment(mini_data, exp, init_tiny, max_steps=6, save_every_n=2, valid_interval=100)
    with pytest.raises(UserError, match=r"^the disk is full: writing training outputs to .* failed \(.* free\); "
                                        r"free some space .* --resume true"):
        train(cfg)
    assert not [f for f in exp.iterdir() if is_partial(f)]  # no torn file left behind
    monkeypatch.setattr(export.torch, "save", real_save)
    cfg.train.resume = True
    assert train(cfg).step == 6


def test_not_enough_space_is_refused_before_writing(mini_data, init_tiny, tmp_path, monkeypatch):
    import valle.training.trainer as trainer

    monkeypatch.setattr("valle.storage.free_bytes", lambda path: 1000)
    with pytest.raises(UserError, match=r"not enough disk space for best-valid-loss.pt at .*: needs about .* MB, "
                                        r"1000 B free"):
        train(experiment(mini_data, tmp_path / "exp", init_tiny, max_steps=2))
    assert trainer  # imported: the patch applies to the trainer's module-level import


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
def test_real_full_disk_on_a_tmpfs(mini_data, init_tiny, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("tmpfs mount not permitted here")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "valle", "train", "--manifest-dir", str(mini_data), "--exp-dir",
             str(mnt / "exp"), "--init-checkpoint", str(init_tiny), "--device", "cpu", "--num-workers", "0",
             "--max-duration", "12", "--max-steps", "40", "--save-every-n", "1", "--keep-last-k", "100",
             "--adapter", "none"],
            capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert "Traceback" not in proc.stderr
        assert last.startswith("error: ") and ("disk" in last) and str(mnt) in last, last
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_epoch_files_are_pruned_and_only_last_holds_the_optimizer(mini_data, init_tiny, tmp_path):
    from valle.models.checkpoint import load_checkpoint

    exp = tmp_path / "exp"
    train(experiment(mini_data, exp, init_tiny, num_epochs=4, keep_last_k=2, valid_interval=1000,
                     save_every_n=1000))
    assert sorted(f.name for f in exp.glob("epoch-*.pt")) == ["epoch-3.pt", "epoch-4.pt"]
    assert "optimizer" in load_checkpoint(exp / "last.pt").train_state
    for name in ("epoch-4.pt", "best-valid-loss.pt"):
        state = load_checkpoint(exp / name).train_state
        assert "optimizer" not in state and state["progress"]["epoch"] >= 1
    assert (exp / "epoch-4.pt").stat().st_size < 0.7 * (exp / "last.pt").stat().st_size  # no AR optimizer state


def test_prune_keeps_the_newest_by_number(tmp_path):
    for n in (2, 10, 9, 1):
        (tmp_path / f"checkpoint-{n}.pt").write_text("x")
    run_folder.prune(tmp_path, "checkpoint", 2)
    assert sorted(f.name for f in tmp_path.glob("*.pt")) == ["checkpoint-10.pt", "checkpoint-9.pt"]
    run_folder.prune(tmp_path, "checkpoint", 0)
    assert not list(tmp_path.glob("*.pt"))


def test_resume_from_an_older_last_never_replaces_a_better_best(mini_data, init_tiny, tmp_path):
    from valle.models.checkpoint import load_checkpoint, save_checkpoint

    exp = tmp_path / "exp"
    train(experiment(mini_data, exp, init_tiny, max_steps=2, valid_interval=1))
    best = load_checkpoint(exp / "best-valid-loss.pt")
    # pretend a later validation (after last.pt was written) scored far better, then the run was killed
    state = {**best.train_state, "progress": {**best.train_state["progress"], "best_valid_loss": 1e-3}}
    model, _ = __import__("valle.models.checkpoint", fromlist=["load_model"]).load_model(exp / "best-valid-loss.pt")
    save_checkpoint(exp / "best-valid-loss.pt", model, tokenizer=best.tokenizer, train_state=state)
    before = (exp / "best-valid-loss.pt").read_bytes()
    cfg = experiment(mini_data, exp, init_tiny, max_steps=4, valid_interval=1, resume=True)
    train(cfg)
    assert (exp / "best-valid-loss.pt").read_bytes() == before
