"""The evaluation probe during training (--eval-interval): eval/* series in tensorboard and the curves PNG,
best-eval.pt only for outputs that pass the detectors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the mini corpus")


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "init-tiny.pt"
    subprocess.run([sys.executable, "-m", "valle", "init-checkpoint", "--output", str(path), "--d-model", "64",
                    "--nhead", "4", "--num-layers", "2"], check=True, capture_output=True)
    return path


def config(mini_data: Path, exp: Path, init: Path, **train):
    from valle.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig

    return ExperimentConfig(ModelConfig(), DataConfig(manifest_dir=str(mini_data), num_workers=0, max_duration=12,
                                                      num_buckets=2),
                            OptimConfig(), TrainConfig(exp_dir=str(exp), init_checkpoint=str(init), device="cpu",
                                                       codec_weights="random", eval_utterances=2, **train))


@pytest.mark.slow
def test_random_codec_run_logs_flagged_series_and_no_best_eval(mini_data, tiny_init, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp = tmp_path / "exp"
    proc = subprocess.run([sys.executable, "-m", "valle", "train", "--manifest-dir", str(mini_data),
                           "--exp-dir", str(exp), "--device", "cpu", "--num-workers", "0", "--max-duration", "12",
                           "--num-buckets", "2", "--init-checkpoint", str(tiny_init), "--max-steps", "2",
                           "--valid-interval", "1", "--eval-interval", "2", "--eval-utterances", "2",
                           "--adapter", "none",
                           "--codec-weights", "random"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = EventAccumulator(str(exp / "tensorboard"), size_guidance={"scalars": 0, "audio": 0})
    acc.Reload()
    flagged = acc.Scalars("eval/flagged")
    assert [e.step for e in flagged] == [0, 2]  # validations at 0, 1, 2; the probe every 2 steps
    assert all(e.value == 1.0 for e in flagged)  # random Encodec: noise
    assert {"eval/eos_rate", "eval/duration_ratio"} <= set(acc.Tags()["scalars"])
    assert len([t for t in acc.Tags()["audio"] if t.startswith("eval/")]) == 2
    assert (exp / "best-valid-loss.pt").exists()
    from valle.models.checkpoint import load_checkpoint  # noise never beats the start: best-eval.pt stays it

    assert load_checkpoint(exp / "best-eval.pt").train_state["progress"]["step"] == 0
    assert json.loads((exp / "verdict.json").read_text())["beaten"] is False
    out = subprocess.run([sys.executable, "-m", "valle", "plot-curves", str(exp)], capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 0 and (exp / "curves.png").stat().st_size > 20_000


@pytest.mark.slow
def test_best_eval_keeps_the_weights_with_the_best_unflagged_score(mini_data, tiny_init, tmp_path, monkeypatch,
                                                                    single_thread):
    """A stand-in synthesizer returns the real recordings (SIM 1, nothing flagged) at step 0 and noise after:
    best-eval.pt must be the step-0 weights, and the eval/sim series must say so."""
    from valle.eval import probe
    from valle.training.trainer import Trainer

    calls = []

    def stand_in(synth, items, preset, sampling, batch_size, label):
        calls.append(label)
        if len(calls) == 1:
            return [(torch.zeros(1, 8), item.wave, True) for item in items]
        return [(torch.zeros(1, 8), 0.1 * torch.randn(item.wave.numel()), True) for item in items]

    monkeypatch.setattr(probe, "synthesize_items", stand_in)
    cfg = config(mini_data, tmp_path / "exp", tiny_init, max_steps=2, valid_interval=1, eval_interval=1)
    trainer = Trainer(cfg, {})
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert len(calls) == 3  # steps 0, 1, 2
    assert trainer.progress.best_eval["step"] == 0
    assert trainer.progress.best_eval["sim"] == pytest.approx(1.0, abs=1e-4)
    from valle.models.checkpoint import load_checkpoint

    best = load_checkpoint(tmp_path / "exp" / "best-eval.pt").state_dict
    assert all(torch.equal(best[k].cpu(), v) for k, v in start.items() if k in best)
    last = load_checkpoint(tmp_path / "exp" / "last.pt").state_dict
    assert any(not torch.equal(last[k].cpu(), v) for k, v in start.items() if k in last)


def test_eval_interval_needs_a_codec(mini_data, tiny_init, tmp_path):
    from valle.data.files import open_cuts
    from valle.errors import UserError
    from valle.eval.probe import EvalProbe

    cuts = open_cuts(mini_data / "cuts_dev.jsonl.gz").to_eager()
    with pytest.raises(UserError, match="--eval-interval needs a codec"):
        EvalProbe(cuts, list(cuts), "none", torch.device("cpu"))


class ScriptedProbe:
    """A stand-in for EvalProbe (the offline codec is random: every real output is noise): the SIM and flagged
    share of each probe, in order."""

    def __init__(self, results):
        self.results, self.steps = list(results), []

    def run(self, model, tokenizer, writer, step):
        from valle.eval.probe import ProbeResult

        sim, flagged = self.results[len(self.steps)]
        self.steps.append(step)
        return ProbeResult(step, sim, flagged)


def probed_run(mini_data, tiny_init, exp, results):
    """A 2-step run probed at steps 0, 1 and 2 -> the trainer and the weights it started from."""
    from valle.training.trainer import Trainer

    cfg = config(mini_data, exp, tiny_init, max_steps=2, valid_interval=1, eval_interval=1)
    cfg.train.codec_weights = "none"  # no validation audio sample: the scripted probe needs no codec
    probe = ScriptedProbe(results)
    trainer = Trainer(cfg, {}, eval_probe=probe)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert probe.steps == [0, 1, 2]
    return trainer, start


def same_weights(path, weights) -> bool:
    from valle.models.checkpoint import load_checkpoint

    saved = load_checkpoint(path).state_dict
    return all(torch.equal(saved[k].cpu(), v.cpu()) for k, v in weights.items())


def test_a_run_that_never_beats_its_start_says_so_and_keeps_it(mini_data, tiny_init, tmp_path, capsys):
    from valle.commands import export_checkpoint

    exp = tmp_path / "exp"
    trainer, start = probed_run(mini_data, tiny_init, exp, [(0.63, 0.0), (0.61, 0.0), (0.60, 0.0)])
    line = (f"fine-tuning did not beat {tiny_init} on your voice: SIM 0.61 vs 0.63; keep {tiny_init} with a prompt "
            "(best-eval.pt is it)")
    assert line in (exp / "log" / "train-rank0.log").read_text()
    assert json.loads((exp / "verdict.json").read_text())["verdict"] == line
    assert same_weights(exp / "best-eval.pt", start)  # the baseline, bit for bit
    capsys.readouterr()
    export_checkpoint.main([str(exp / "best-valid-loss.pt"), str(tmp_path / "voice.safetensors")])
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {exp}: {line}") and (tmp_path / "voice.safetensors").is_file()


def test_a_run_that_beats_its_start_keeps_its_best_step(mini_data, tiny_init, tmp_path, capsys):
    from valle.commands import export_checkpoint

    exp = tmp_path / "exp"
    trainer, start = probed_run(mini_data, tiny_init, exp, [(0.50, 0.0), (0.70, 0.5), (0.60, 0.0)])
    # step 1 sounds more like the voice but flags half its outputs: step 2 wins
    assert trainer.progress.best_eval["step"] == 2
    assert same_weights(exp / "best-eval.pt", trainer.model.state_dict())
    assert not same_weights(exp / "best-eval.pt", start)
    assert json.loads((exp / "verdict.json").read_text())["verdict"] == (
        f"fine-tuning beat {tiny_init} on your voice: SIM 0.60 vs 0.50, flagged 0% vs 0% (step 2, best-eval.pt)")
    capsys.readouterr()
    export_checkpoint.main([str(exp / "best-eval.pt"), str(tmp_path / "voice.safetensors")])
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("other, beaten", [((0.7, 0.0, 0.10), True), ((0.7, 0.25, 0.10), False),
                                           ((0.6, 0.0, 0.10), False), ((0.7, 0.0, 0.30), False),
                                           ((float("nan"), 0.0, 0.10), False)])
def test_beating_needs_a_higher_sim_and_nothing_worse(other, beaten):
    from valle.eval.probe import ProbeResult

    assert ProbeResult(5, *other).beats(ProbeResult(0, 0.6, 0.0, 0.2)) is beaten
    assert ProbeResult(5, 0.7, 0.0).beats(ProbeResult(0, 0.6, 0.0, 0.2))  # no WER on one side: SIM and flags decide
