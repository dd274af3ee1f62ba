"""The training loop on the mini corpus with a tiny model: learning, logs, checkpoints, resume, flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import metrics, train_metrics_so_far

REPO = Path(__file__).resolve().parents[1]
TRAINER = [sys.executable, "-m", "valle", "train"]
TINY = ["--d-model", "64", "--nhead", "4", "--num-layers", "2"]


def train_args(data: Path, exp: Path, *extra: str) -> list[str]:
    return [*TRAINER, "--manifest-dir", str(data), "--exp-dir", str(exp), "--device", "cpu",
            "--num-workers", "0", "--max-duration", "12", "--num-buckets", "2", "--log-interval", "1",
            "--num-epochs", "100", "--adapter", "none", *extra]  # full fine-tuning, not the LoRA the data would get


def run_trainer(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def init_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("init") / "init-tiny.pt"
    run_trainer(sys.executable, "-m", "valle", "init-checkpoint", "--output", str(path), *TINY)
    return path


@pytest.mark.parametrize("stage", ["ar", "nar"])
def test_finetuning_lowers_dev_loss_and_logs_tensorboard(mini_data, init_ckpt, tmp_path, stage):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp = tmp_path / stage
    run_trainer(*train_args(mini_data, exp, "--model-name", stage, "--init-checkpoint", str(init_ckpt),
                            "--max-steps", "40", "--valid-interval", "20", "--base-lr", "0.05",
                            "--warmup-steps", "5", "--codec-weights", "random", "--eval-interval", "0"))
    valid = metrics(exp, "valid")
    assert {0, 20, 40} <= {r["step"] for r in valid}  # the start, every 20 steps, and each epoch end
    assert valid[-1]["loss"] < valid[0]["loss"] - 0.2, valid
    assert valid[-1]["top10_acc"] > valid[0]["top10_acc"], valid
    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/top10_acc", "valid/loss", "valid/top10_acc", "train/lr",
                "train/grad_norm", "train/frames_per_s"):
        assert tag in tags, (tag, tags)
    assert "valid/sample" in acc.Tags()["audio"]  # a synthesized dev sentence at each validation
    for name in ("config.yaml", "last.pt", "best-valid-loss.pt", "log/train-rank0.log"):
        assert (exp / name).is_file(), name


def test_best_valid_checkpoint_holds_the_validated_weights(mini_data, init_ckpt, tmp_path):
    from valle.models.checkpoint import load_checkpoint

    exp = tmp_path / "exp"
    run_trainer(*train_args(mini_data, exp, "--model-name", "ar", "--init-checkpoint", str(init_ckpt),
                            "--max-steps", "10", "--valid-interval", "5", "--save-every-n", "5"))
    best_step = min(metrics(exp, "valid"), key=lambda r: r["loss"])["step"]
    best = load_checkpoint(exp / "best-valid-loss.pt")
    assert best.train_state["progress"]["step"] == best_step
    assert set(best.train_state) == {"progress", "experiment"}  # only last.pt resumes: the trainer's resumable parts
    assert set(load_checkpoint(exp / "last.pt").train_state) == {"progress", "experiment", "optimizer", "scheduler",
                                                                 "grad_scaler", "rng"}
    if best_step in (5, 10):
        same_step = load_checkpoint(exp / f"checkpoint-{best_step}.pt")
        for k, v in same_step.state_dict.items():
            assert torch.equal(v, best.state_dict[k]), k


def test_sigkill_then_resume_gives_identical_losses(mini_data, init_ckpt, tmp_path):
    common = ["--model-name", "nar", "--init-checkpoint", str(init_ckpt), "--max-steps", "40",
              "--save-every-n", "10", "--valid-interval", "100", "--keep-last-k", "10"]
    straight = tmp_path / "straight"
    run_trainer(*train_args(mini_data, straight, *common))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_args(mini_data, killed, *common), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not any(r["step"] >= 12 for r in train_metrics_so_far(killed)):
        assert time.time() < deadline and proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_trainer(*train_args(mini_data, killed, *common, "--resume", "true"))

    expected = {r["step"]: r["loss"] for r in metrics(straight, "train")}
    logged = metrics(killed, "train")  # the killed run's steps up to its last.pt, then the resumed run's
    assert [r["step"] for r in logged] == sorted(expected)  # each step once: the steps after last.pt are dropped
    for r in logged:
        assert r["loss"] == expected[r["step"]], (r["step"], r["loss"], expected[r["step"]])
    assert "resumed at step" in (killed / "log" / "train-rank0.log").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(killed / "tensorboard")).Reload().Scalars("train/loss")
    assert [e.step for e in events] == sorted(expected)  # tensorboard purged the re-run steps too


def test_boolean_flags_reach_the_model_and_trainer(tmp_path):
    from valle.commands.train import parse_args

    cfg, model, _ = parse_args(["--add-prenet", "false", "--share-embedding", "no", "--shuffle", "0",
                                "--drop-last", "yes", "--resume", "1"])
    assert model == {"add_prenet": False, "share_embedding": False}
    assert (cfg.data.shuffle, cfg.data.drop_last, cfg.train.resume) == (False, True, True)
    cfg, model, given = parse_args([])
    assert model == given == {} and cfg.data.shuffle is True and cfg.train.resume is False
    with pytest.raises(SystemExit):
        parse_args(["--add-prenet", "maybe"])


@pytest.mark.parametrize("prenet", [False, True])
def test_add_prenet_flag_builds_exactly_that(mini_data, tmp_path, prenet):
    from valle.models.checkpoint import load_checkpoint

    exp = tmp_path / "exp"
    run_trainer(*train_args(mini_data, exp, "--model-name", "ar", "--init-checkpoint", "none", *TINY,
                            "--add-prenet", str(prenet).lower(), "--max-steps", "1", "--valid-interval", "1"))
    keys = load_checkpoint(exp / "last.pt").state_dict
    assert any("prenet" in k for k in keys) == prenet
    assert "add_prenet: " + str(prenet).lower() in (exp / "config.yaml").read_text()


def test_prenet_model_refuses_a_checkpoint_without_prenet(mini_data, init_ckpt, tmp_path):
    proc = subprocess.run(train_args(mini_data, tmp_path / "exp", "--init-checkpoint", str(init_ckpt),
                                     "--add-prenet", "true", "--max-steps", "1"),
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "prenet" in proc.stderr and "Traceback" not in proc.stderr


def test_tokenizer_mismatch_is_refused(mini_data, tmp_path):
    espeak_init = tmp_path / "espeak-init.pt"
    run_trainer(sys.executable, "-m", "valle", "init-checkpoint", "--output", str(espeak_init), *TINY,
                "--tokenizer", "espeak")
    proc = subprocess.run(train_args(mini_data, tmp_path / "exp", "--init-checkpoint", str(espeak_init),
                                     "--max-steps", "1"), capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "tokenizer" in proc.stderr.lower(), proc.stderr
    assert "Traceback" not in proc.stderr


def test_early_stopping_when_valid_loss_stalls(mini_data, init_ckpt, tmp_path):
    exp = tmp_path / "exp"
    run_trainer(*train_args(mini_data, exp, "--init-checkpoint", str(init_ckpt), "--base-lr", "1e-30",
                            "--max-steps", "50", "--valid-interval", "2", "--early-stop-patience", "2"))
    valid = metrics(exp, "valid")
    assert [r["step"] for r in valid] == [0, 2, 4]  # the start, then two validations without improvement
    assert "early stop" in (exp / "log" / "train-rank0.log").read_text()


def test_nan_losses_skip_steps_then_stop_with_a_message(mini_data, init_ckpt, tmp_path, monkeypatch):
    from valle.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
    from valle.errors import UserError
    from valle.models.valle import VALLE
    from valle.training.trainer import Trainer

    real_forward = VALLE.forward

    def nan_forward(self, batch, half):
        out = real_forward(self, batch, half)
        return {**out, "loss": out["loss"] * float("nan")} if self.training else out

    monkeypatch.setattr(VALLE, "forward", nan_forward)
    cfg = ExperimentConfig(ModelConfig(), DataConfig(manifest_dir=str(mini_data), num_workers=0, max_duration=12),
                           OptimConfig(), TrainConfig(exp_dir=str(tmp_path / "exp"), init_checkpoint=str(init_ckpt),
                                                      device="cpu", max_bad_steps=3, max_steps=10))
    trainer = Trainer(cfg, {})
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(UserError, match="3 optimizer steps in a row had a NaN"):
        trainer.fit()
    assert trainer.progress.step == 0
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, weights[k]), k


def test_trainable_patterns_narrow_what_is_trained(mini_data, init_ckpt, tmp_path):
    from valle.models.checkpoint import load_checkpoint

    exp = tmp_path / "exp"
    run_trainer(*train_args(mini_data, exp, "--init-checkpoint", str(init_ckpt), "--model-name", "ar",
                            "--trainable", "ar_predict_layer", r"ar_decoder\.layers\.1\.", "--max-steps", "3",
                            "--valid-interval", "100", "--base-lr", "0.05"))
    before, after = load_checkpoint(init_ckpt).state_dict, load_checkpoint(exp / "last.pt").state_dict
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("ar_predict_layer", "ar_decoder.layers.1.")) for k in changed), changed
    assert set(after) == set(before)  # the saved checkpoint always holds both halves


def _uneven_worker(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from valle.training.distributed import all_ranks_true

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    batches = iter(range(3 if rank == 0 else 5))  # rank 0 runs out first
    steps = 0
    while all_ranks_true(next(batches, None) is not None, torch.device("cpu")):
        t = torch.ones(1)
        dist.all_reduce(t)  # what DDP's backward does: would hang if one rank had stopped
        steps += 1
    results[rank] = steps
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes with torch and gloo
def test_ranks_with_uneven_batches_stop_together():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    ctx = mp.spawn(_uneven_worker, args=(port, results), nprocs=2, join=False)
    deadline = time.time() + 120
    while not ctx.join(timeout=1):
        assert time.time() < deadline, "ranks with uneven batches hung"
    assert dict(results) == {0: 3, 1: 3}


def test_two_process_ddp_keeps_replicas_identical(mini_data, init_ckpt, tmp_path):
    exp = tmp_path / "exp"
    args = train_args(mini_data, exp, "--model-name", "nar", "--init-checkpoint", str(init_ckpt),
                      "--max-steps", "6", "--valid-interval", "3", "--save-every-n", "3")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run_trainer(*launcher, *args[1:], timeout=600)
    checksums = []
    for rank in (0, 1):
        lines = (exp / "log" / f"train-rank{rank}.log").read_text().splitlines()
        checksums.append([line.split("checksum ")[1] for line in lines if "parameter checksum" in line])
    assert checksums[0] and checksums[0] == checksums[1]
    assert (exp / "last.pt").is_file() and (exp / "checkpoint-6.pt").is_file()


_SAVE_FOREVER = """
import sys, torch
from valle.config import ModelConfig
from valle.models.checkpoint import save_checkpoint
from valle.models.valle import VALLE
model = VALLE(ModelConfig(d_model=256, nhead=4, num_layers=4))
step = 0
while True:
    step += 1
    save_checkpoint(sys.argv[1], model, train_state={"progress": {"step": step}})
    print(step, flush=True)
"""


@pytest.mark.slow  # four Python processes that build a model
def test_kill_during_checkpoint_write_never_leaves_a_truncated_file(tmp_path):
    from valle.models.checkpoint import load_checkpoint

    last = tmp_path / "last.pt"
    for delay in (0.0, 0.013, 0.029, 0.047):
        with subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER, str(last)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True) as proc:
            assert proc.stdout.readline().strip().isdigit()  # one complete write, the next one under way
            time.sleep(delay)
            proc.kill()
        loaded = load_checkpoint(last)  # the previous complete file or the new one, never a torn one
        assert loaded.train_state["progress"]["step"] >= 1
        assert len(loaded.state_dict) > 100


@pytest.mark.slow  # three CLI processes and the init checkpoint
def test_export_cli_round_trips_fine_tuned_weights(init_ckpt, tmp_path):
    from valle.models.checkpoint import load_checkpoint

    original = load_checkpoint(init_ckpt)
    for name in ("released.pt", "weights.safetensors"):
        run_trainer(sys.executable, "-m", "valle", "export", "checkpoint", str(init_ckpt), str(tmp_path / name))
        exported = load_checkpoint(tmp_path / name, nhead=4 if name.endswith(".pt") else None)
        assert exported.config == original.config
        assert set(exported.state_dict) == set(original.state_dict)
        for k, v in original.state_dict.items():
            assert torch.equal(exported.state_dict[k], v), k
    bad = subprocess.run([sys.executable, "-m", "valle", "export", "checkpoint", str(init_ckpt),
                          str(tmp_path / "x.bin")], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "must end in .pt" in bad.stderr


def test_model_name_both_trains_both_halves(mini_data, init_ckpt, tmp_path):
    from valle.models.checkpoint import load_checkpoint

    exp = tmp_path / "exp"
    run_trainer(*train_args(mini_data, exp, "--init-checkpoint", str(init_ckpt), "--model-name", "both",
                            "--max-steps", "2", "--valid-interval", "100", "--base-lr", "0.05"))
    before, after = load_checkpoint(init_ckpt).state_dict, load_checkpoint(exp / "last.pt").state_dict
    changed = {k.split("_")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"ar", "nar"}


def test_init_checkpoint_auto_means_the_released_checkpoint_for_vallex_cuts(mini_data, init_ckpt, tmp_path,
                                                                             monkeypatch):
    import valle.training.trainer as trainer_module
    from valle.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig

    asked = []
    real_load = trainer_module.load_model

    def offline_load(path, **kw):  # the released checkpoint cannot be downloaded here: stand in the tiny one
        asked.append(path)
        return real_load(init_ckpt, **kw)

    monkeypatch.setattr(trainer_module, "load_model", offline_load)
    cfg = ExperimentConfig(ModelConfig(), DataConfig(manifest_dir=str(mini_data), num_workers=0),
                           OptimConfig(), TrainConfig(exp_dir=str(tmp_path / "exp"), device="cpu"))
    assert cfg.train.init_checkpoint == "auto"
    trainer_module.Trainer(cfg, {})
    assert asked == ["vallex"]


def test_dataset_frames_text_with_bos_eos_only_for_models_that_have_them(mini_data):
    from valle.config import ModelConfig
    from valle.data.dataset import SpeechDataset
    from valle.data.files import load_cuts

    cuts = load_cuts(mini_data / "cuts_dev.jsonl.gz").subset(first=2)
    plain = SpeechDataset(3, ModelConfig())[cuts]
    framed = SpeechDataset(0, ModelConfig(text_bos_id=1, text_eos_id=2))[cuts]
    assert torch.equal(framed["text_lens"], plain["text_lens"] + 2)
    for i, n in enumerate(plain["text_lens"].tolist()):
        assert framed["text_tokens"][i, 0] == 1 and framed["text_tokens"][i, n + 1] == 2
        assert torch.equal(framed["text_tokens"][i, 1:n + 1], plain["text_tokens"][i, :n])
        assert torch.equal(framed["text_langs"][i, : n + 2], torch.cat([plain["text_langs"][i, :1],
                                                                       plain["text_langs"][i, :n],
                                                                       plain["text_langs"][i, n - 1:n]]))


def test_espeak_corpus_trains_from_scratch_with_bos_eos_and_synthesizes(mini_data, tmp_path):
    import shutil

    from valle.models.checkpoint import load_checkpoint

    data = tmp_path / "data"
    shutil.copytree(mini_data.parent, data)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([str(REPO / "egs" / "custom" / "prepare.sh"), "--data-dir", str(data), "--stage", "4",
                    "--tokenizer", "espeak", "--language", "en"], check=True, env=env, capture_output=True,
                   cwd=REPO / "egs" / "custom")
    assert json.loads((data / "tokenized" / "text_tokenizer.json").read_text())["name"] == "espeak"
    exp = tmp_path / "exp"
    run_trainer(*train_args(data / "tokenized", exp, *TINY, "--max-steps", "2", "--valid-interval", "100"))
    config = load_checkpoint(exp / "last.pt").config  # --init-checkpoint auto: from scratch for espeak cuts
    assert (config.text_bos_id, config.text_eos_id) == (1, 2)
    out = tmp_path / "out.wav"
    run_trainer(sys.executable, "-m", "valle", "infer", "--checkpoint", str(exp / "last.pt"),
                "--text", "Hello there.", "--language", "en", "--codec-weights", "random", "--max-frames", "20",
                "--output", str(out), "--top-k", "1")
    assert out.stat().st_size > 44


@pytest.mark.parametrize("utterances,num_buckets", [(3, 10), (5, 10), (12, 10), (30, 10), (30, 1)])
def test_any_corpus_prepare_accepts_trains(mini_data, init_ckpt, tmp_path, utterances, num_buckets):
    # Corpora of a few utterances, split as prepare.sh splits them (custom recipe ratios): one dev cut, one
    # training batch, too few cuts for two duration buckets, or --num-buckets 1. Each trains and validates
    # without a warning.
    import gc
    import shutil
    import warnings

    from lhotse import CutSet

    from valle.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
    from valle.data.files import load_cuts
    from valle.data.split import split_by_parts
    from valle.training.trainer import Trainer

    every = [c for split in ("train", "dev", "test") for c in load_cuts(mini_data / f"cuts_{split}.jsonl.gz")]
    corpus = CutSet.from_cuts(sorted(every, key=lambda c: c.id)[:utterances])
    splits = split_by_parts({"all": corpus}, dev_ratio=0.05, test_ratio=0.05, seed=42)
    assert len(splits["dev"]) <= 2 and len(splits["train"]) >= utterances - 4
    data = tmp_path / "data"
    data.mkdir()
    for name, cuts in splits.items():
        cuts.to_file(data / f"cuts_{name}.jsonl.gz")
    shutil.copy(mini_data / "text_tokenizer.json", data)
    cfg = ExperimentConfig(ModelConfig(), DataConfig(manifest_dir=str(data), num_workers=0, num_buckets=num_buckets),
                           OptimConfig(), TrainConfig(exp_dir=str(tmp_path / "exp"), init_checkpoint=str(init_ckpt),
                                                      device="cpu", max_steps=3, model_name="nar"))
    gc.collect()  # objects left by earlier tests of this process warn when collected: not this test's warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        progress = Trainer(cfg, {}).fit()
    assert progress.step == 3
    assert [str(w.message) for w in caught if "lhotse" in w.filename or "numpy" in w.filename] == []
    valid = metrics(tmp_path / "exp", "valid")
    assert valid and all(r["loss"] == r["loss"] and r["loss"] < 100 for r in valid)  # finite losses
