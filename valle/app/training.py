"""The Train tab: the trainer (`valle train`) as a subprocess, and what the page
shows of a run.

The trainer itself holds its experiment folder's lock (valle.locks) and records its pid in `EXP/.lock`,
so the page finds a running job from the folder alone, whoever started it (the page before a reload, the
page of an earlier app process, or the CLI). Stop sends SIGINT; resume reruns with `--resume true`.
Curves and the log come from the files the trainer writes: log/metrics.jsonl and the console output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from valle.app.workspace import Workspace
from valle.config import AdapterConfig, DataConfig, ModelConfig, OptimConfig, TrainConfig
from valle.errors import UserError
from valle.locks import lock_holder
from valle.storage import atomic_write_text
from valle.training import run_folder

TRAINER = [sys.executable, "-m", "valle", "train"]  # the installed package's trainer: no repository needed
CONSOLE = "app-console.log"  # the trainer's stdout + stderr, in the experiment folder
OPTIONS = "app-options.json"  # the page's options of the last start there: a reloaded page shows them again
# Flags the page sets itself (paths are confined to the workspace; resume/overwrite are buttons).
_PAGE_FLAGS = {"manifest_dir", "exp_dir", "init_checkpoint", "codec_weights", "resume", "overwrite", "adapter",
               "lora_rank"}
EXTRA_FLAGS = sorted({f.name for cls in (DataConfig, OptimConfig, TrainConfig, ModelConfig, AdapterConfig)
                      for f in dataclasses.fields(cls)} - _PAGE_FLAGS)
INIT_CHOICES = ("auto", "vallex", "none")
_TQDM_BAR = re.compile(r"epoch \d+: \d+step \[[^\]]*\]")  # the trainer's progress bar, redrawn with \r


@dataclass
class TrainOptions:
    """The Train tab's fields; the defaults and the checks are the trainer's configs' (see `check`)."""

    data_dir: str = "data"  # its tokenized/ folder holds the cuts
    exp_dir: str = "exp/ar"
    model_name: str = TrainConfig.model_name
    init_checkpoint: str = TrainConfig.init_checkpoint  # auto | vallex | none | a checkpoint in the workspace
    base_lr: float = OptimConfig.base_lr
    max_steps: int = TrainConfig.max_steps
    num_epochs: int = TrainConfig.num_epochs
    max_duration: float = DataConfig.max_duration
    early_stop_patience: int = TrainConfig.early_stop_patience
    valid_interval: int = TrainConfig.valid_interval
    codec_weights: str = TrainConfig.codec_weights  # the validation audio sample: none | pretrained | random | a file
    adapter: str = AdapterConfig.adapter
    lora_rank: int = AdapterConfig.lora_rank
    extra: str = ""  # more trainer flags, e.g. "--d-model 64 --num-layers 2"

    def check(self) -> None:
        """The values the trainer will be given, through the trainer's own checks (a UserError names the flag)."""
        TrainConfig(model_name=self.model_name, max_steps=self.max_steps, num_epochs=self.num_epochs,
                    early_stop_patience=self.early_stop_patience, valid_interval=self.valid_interval)
        OptimConfig(base_lr=self.base_lr)
        DataConfig(max_duration=self.max_duration)
        AdapterConfig(adapter=self.adapter, lora_rank=self.lora_rank)


def extra_flags(text: str) -> list[str]:
    """Parse the "more flags" box: any trainer flag except those the page sets itself."""
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise UserError(f"more flags {text!r}: {e}") from None
    for token in tokens:
        if token.startswith("--") and token[2:].split("=", 1)[0].replace("-", "_") not in EXTRA_FLAGS:
            raise UserError(f"more flags: {token} is not a trainer flag the page passes on; use the fields above "
                            "for folders and checkpoints (flags: " + " ".join("--" + f.replace("_", "-")
                                                                              for f in EXTRA_FLAGS) + ")")
    if tokens and not tokens[0].startswith("--"):
        raise UserError(f"more flags: {tokens[0]!r} is not a flag; write e.g. --d-model 64 --num-layers 2")
    return tokens


def trainer_argv(ws: Workspace, o: TrainOptions, resume: bool = False, overwrite: bool = False) -> list[str]:
    """The trainer's command line for the page's options (paths checked against the workspace)."""
    o.check()
    manifest_dir = ws.path(o.data_dir, "data folder", must_exist=True) / "tokenized"
    if not (manifest_dir / "cuts_train.jsonl.gz").is_file():
        raise UserError(f"{ws.relative(manifest_dir)}/cuts_train.jsonl.gz not found: prepare the data in the "
                        "Data tab first (or pick the data folder it wrote)")
    init = o.init_checkpoint.strip() or "auto"
    if init not in INIT_CHOICES:
        init = str(ws.path(init, "start checkpoint", must_exist=True))
    codec = o.codec_weights.strip() or "none"
    if codec not in ("none", "pretrained", "random"):
        codec = str(ws.path(codec, "codec weights", must_exist=True))
    argv = [*TRAINER, "--manifest-dir", str(manifest_dir),
            "--exp-dir", str(ws.path(o.exp_dir, "experiment folder")), "--model-name", o.model_name,
            "--init-checkpoint", init, "--base-lr", str(o.base_lr), "--max-steps", str(int(o.max_steps)),
            "--num-epochs", str(int(o.num_epochs)), "--max-duration", str(o.max_duration),
            "--early-stop-patience", str(int(o.early_stop_patience)),
            "--valid-interval", str(int(o.valid_interval)), "--codec-weights", codec, "--adapter", o.adapter]
    if o.adapter == "lora":
        argv += ["--lora-rank", str(int(o.lora_rank))]
    argv += extra_flags(o.extra)
    if resume:
        argv += ["--resume", "true"]
    if overwrite:
        argv += ["--overwrite", "true"]
    return argv


def saved_options(exp_dir: Path) -> TrainOptions | None:
    """The options the page last started a run in exp_dir with (None: never started from the page)."""
    try:
        return TrainOptions(**json.loads((exp_dir / OPTIONS).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


# ------------------------------------------------------------------------------------------ the job


def running_pid(exp_dir: Path) -> int | None:
    """The pid of the trainer holding exp_dir's lock on this machine, when it is still alive."""
    match = re.match(r"pid (\d+) on (\S+) ", lock_holder(exp_dir))
    if not match or match.group(2) != socket.gethostname():
        return None
    pid = int(match.group(1))
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [os.fsdecode(arg) for arg in cmdline.split(b"\0")]
    if not is_trainer(argv) or Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
        return None  # the pid now belongs to another program, or the trainer exited and awaits its parent
    return pid


def is_trainer(argv: list[str]) -> bool:
    """Whether a command line runs the trainer: `valle train`, `python -m valle train` (the page's, the recipes'),
    `torchrun ... -m valle train`."""
    names = [Path(arg).name for arg in argv]
    return any(a == "valle" and b == "train" for a, b in zip(names, names[1:]))


class Jobs:
    """Training processes this app started (so that it reaps them); the folder's lock is the truth."""

    def __init__(self):
        self.started: dict[Path, subprocess.Popen] = {}

    def start(self, ws: Workspace, o: TrainOptions, resume: bool = False, overwrite: bool = False) -> str:
        argv = trainer_argv(ws, o, resume, overwrite)
        exp_dir = ws.path(o.exp_dir, "experiment folder")
        if self.is_running(exp_dir):
            raise UserError(f"{ws.relative(exp_dir)} is in use by {lock_holder(exp_dir)}: stop that training "
                            "first, or use another experiment folder")
        exp_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(exp_dir / OPTIONS, json.dumps(dataclasses.asdict(o), indent=1) + "\n")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
        with open(exp_dir / CONSOLE, "wb") as console:
            console.write(("$ " + shlex.join(["python", *argv[1:]]) + "\n").encode())
            console.flush()
            # a session of its own: Ctrl-C in the app's terminal does not stop training
            self.started[exp_dir] = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, env=env,
                                                     start_new_session=True, cwd=ws.root)
        return f"started training in {ws.relative(exp_dir)} (pid {self.started[exp_dir].pid})"

    def _child(self, exp_dir: Path) -> subprocess.Popen | None:
        proc = self.started.get(exp_dir)
        return proc if proc is not None and proc.poll() is None else None

    def is_running(self, exp_dir: Path) -> bool:
        return self._child(exp_dir) is not None or running_pid(exp_dir) is not None

    def stop(self, exp_dir: Path) -> str:
        """SIGINT to the trainer: it stops between steps (last.pt holds the last saved step)."""
        child = self._child(exp_dir)
        pid = child.pid if child is not None else running_pid(exp_dir)
        if pid is None:
            raise UserError(f"no training is running in {exp_dir.name}")
        os.kill(pid, signal.SIGINT)
        return f"stop requested (SIGINT to pid {pid}); resume continues from last.pt"

    def state(self, exp_dir: Path) -> str:
        """running | finished | stopped | failed | not running."""
        if self.is_running(exp_dir):
            return "running"
        proc = self.started.get(exp_dir)
        if proc is None:
            return "not running"
        if proc.returncode == 0:
            return "finished"
        if proc.returncode in (130, -signal.SIGINT, -signal.SIGTERM):
            return "stopped (Resume continues from last.pt, the last step saved)"
        return f"failed (exit code {proc.returncode}): the log below says why"


# ------------------------------------------------------------------------------------- what it shows


def read_metrics(exp_dir: Path) -> list[dict]:
    """The records of EXP/log/metrics.jsonl (a line being written is skipped)."""
    path = exp_dir / "log" / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def curves(records: list[dict]):
    """A long table for the plots: step, split (train/valid), loss, top10_acc."""
    import pandas as pd

    rows = [{"step": r["step"], "split": r["split"], "loss": r["loss"], "top10_acc": r["top10_acc"]}
            for r in records if "loss" in r]
    return pd.DataFrame(rows, columns=["step", "split", "loss", "top10_acc"])


def log_tail(exp_dir: Path, lines: int = 30) -> str:
    path = exp_dir / CONSOLE
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    kept = [line for line in _TQDM_BAR.sub("\n", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def summary(exp_dir: Path, records: list[dict], state: str) -> str:
    """One paragraph: state, last step, latest train/valid figures and the best checkpoint so far."""
    train = [r for r in records if r["split"] == "train"]
    valid = [r for r in records if r["split"] == "valid"]
    parts = [f"**{state}**"]
    if train:
        t = train[-1]
        parts.append(f"step {t['step']} (epoch {t['epoch']}): train loss {t['loss']:.4f}, "
                     f"top-10 acc {t['top10_acc']:.3f}")
    if valid:
        best = min(valid, key=lambda r: r["loss"])
        parts.append(f"valid loss {valid[-1]['loss']:.4f} at step {valid[-1]['step']}; best {best['loss']:.4f} "
                     f"at step {best['step']}")
    best_file = exp_dir / "best-valid-loss.pt"
    if best_file.is_file():
        parts.append(f"best checkpoint: `{best_file.name}` in this folder")
    unbeaten = run_folder.unbeaten_verdict(exp_dir)
    if unbeaten:  # before anyone exports or uses this run
        parts.append(f"⚠ {unbeaten}")
    return " · ".join(parts)


def valid_sample(exp_dir: Path, out_dir: Path) -> str | None:
    """The latest validation audio sample (tensorboard `valid/sample`) as a wav file, or None."""
    tb = exp_dir / "tensorboard"
    if not tb.is_dir():
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb), size_guidance={"audio": 1, "scalars": 1, "tensors": 1})
    acc.Reload()
    if "valid/sample" not in acc.Tags().get("audio", []):
        return None
    event = acc.Audio("valid/sample")[-1]
    out = out_dir / f"{exp_dir.name}-valid-sample-step{event.step}.wav"
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_bytes(event.encoded_audio_string)
    return str(out)
