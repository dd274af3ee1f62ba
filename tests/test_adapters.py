"""LoRA adapters and activation checkpointing: exactness, merging, files, base checks, training, resume, CLIs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import metrics, train_metrics_so_far

from valle.config import AdapterConfig, DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
from valle.errors import UserError
from valle.inference import Request, generate, load_prompt
from valle.models.adapters import AdapterSpec, attach, base_identity
from valle.models.checkpoint import (
    CheckpointError,
    load_adapter,
    load_checkpoint,
    load_model,
    merge_adapter_files,
    save_adapter,
    save_checkpoint,
)
from valle.models.layers import set_activation_checkpointing
from valle.models.valle import Sampling

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "vallex_tiny"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
EVERYTHING = AdapterSpec(rank=4, alpha=8.0, dropout=0.0, targets=("attn", "ffn", "predict"), halves=("ar", "nar"))
BOTH_HALVES = AdapterSpec(rank=4, alpha=8.0, halves=("ar", "nar"))  # the default targets: attn, ffn


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


def tiny():
    model, _ = load_model(TINY / "tiny.pt", nhead=4)
    return model


def batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"text_tokens": torch.randint(5, 70, (2, 9), generator=g), "text_lens": torch.tensor([9, 6]),
            "text_langs": torch.zeros(2, 9, dtype=torch.long),
            "codes": torch.randint(0, 1024, (2, 40, 8), generator=g), "code_lens": torch.tensor([40, 31])}


def randomize(lora, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in lora.named_adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def losses(model) -> list[float]:
    torch.manual_seed(0)  # the NAR's prompt prefix is drawn
    with torch.no_grad():
        return [float(model(batch(), half="ar")["loss"])] + [
            float(model(batch(), half="nar", codebook=j)["loss"]) for j in range(1, 8)]


def greedy_codes(model) -> list[torch.Tensor]:
    ids = torch.randint(5, 70, (12,), generator=torch.Generator().manual_seed(0)).tolist()
    reqs = [Request(ids, ["en"] * 12, load_prompt(TINY / "prompt.npz")), Request(ids, ["en"] * 12)]
    return generate(model, reqs, Sampling(top_k=1, max_frames=60))


# ---- the model -------------------------------------------------------------------------------

def test_zero_initialised_adapter_is_exactly_the_base():
    model = tiny()
    base_losses, base_codes = losses(model), greedy_codes(model)
    lora = attach(model, EVERYTHING).eval()
    assert all(float(p.detach().abs().sum()) == 0 for n, p in lora.named_adapter_parameters() if n.endswith("lora_B"))
    assert losses(model) == base_losses
    for got, want in zip(greedy_codes(model), base_codes):
        assert torch.equal(got, want)


def test_packed_qkv_gets_one_pair_per_projection_and_base_names_stay():
    model = tiny()
    keys = list(model.state_dict())
    lora = attach(model, AdapterSpec(rank=4, halves=("ar",), targets=("attn",)))
    shapes = {n: tuple(p.shape) for n, p in lora.named_adapter_parameters()}
    assert shapes["ar_decoder.layers.0.self_attn.in_proj_weight.lora_A"] == (3, 4, 64)  # q, k, v
    assert shapes["ar_decoder.layers.0.self_attn.in_proj_weight.lora_B"] == (3, 64, 4)
    assert shapes["ar_decoder.layers.1.self_attn.out_proj.weight.lora_A"] == (1, 4, 64)
    assert len(shapes) == 2 * 2 * 2  # 2 layers x (in_proj, out_proj) x (A, B)
    assert list(model.state_dict()) == keys  # the adapters are not in the model's state dict


def test_merged_adapter_equals_unmerged_and_unties_shared_outputs():
    model = tiny()
    assert model.config.share_embedding
    lora = attach(model, EVERYTHING).eval()
    randomize(lora)
    unmerged = losses(model)
    embedding = model.nar_audio_embeddings[2].word_embeddings.weight.detach().clone()
    lora.merge(model)
    merged = losses(model)
    assert merged == pytest.approx(unmerged, rel=1e-5)
    assert merged != pytest.approx(losses(tiny()), rel=1e-3)  # the adapter did change the model
    # the NAR output layer got its own weights; the audio embedding it was tied to is unchanged
    assert torch.equal(model.nar_audio_embeddings[2].word_embeddings.weight, embedding)
    assert not model.config.share_embedding


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    def step(checkpointing: bool, half: str):
        model = tiny().train()  # dropout on: the recomputation must replay the same masks
        set_activation_checkpointing(model, checkpointing)
        lora = attach(model, AdapterSpec(rank=4, halves=("ar", "nar"), targets=("attn", "ffn"), dropout=0.1))
        randomize(lora)
        for p in model.ar_decoder.parameters():
            p.requires_grad_(True)  # full fine-tuning of the AR stack and adapters alike
        torch.manual_seed(3)
        loss = model(batch(), half=half, codebook=2 if half == "nar" else None)["loss"]
        loss.backward()
        named = [*model.ar_decoder.named_parameters(), *lora.named_adapter_parameters()]
        return loss.detach(), {n: p.grad.clone() for n, p in named if p.grad is not None}

    for half in ("ar", "nar"):
        loss, grads = step(False, half)
        loss_ckpt, grads_ckpt = step(True, half)
        assert torch.equal(loss, loss_ckpt)
        assert grads.keys() == grads_ckpt.keys() and len(grads) > 10
        for n in grads:
            torch.testing.assert_close(grads_ckpt[n], grads[n], rtol=1e-5, atol=1e-7, msg=n)


# ---- files -----------------------------------------------------------------------------------

def _adapter_file(tmp_path: Path, suffix: str = ".pt", spec: AdapterSpec = EVERYTHING):
    """A base checkpoint, an adapter file of random pairs for it, and the model with them merged."""
    base = tmp_path / "base.pt"
    model = tiny()
    save_checkpoint(base, model)
    lora = attach(model, spec)
    randomize(lora)
    path = save_adapter(tmp_path / f"voice{suffix}", spec, lora.adapter_state_dict(),
                        base_identity(model, spec.halves, str(base)))
    lora.eval().merge(model)
    return base, path, model


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_adapter_file_round_trip_and_merge_at_load(tmp_path, suffix):
    base, path, merged = _adapter_file(tmp_path, suffix)
    assert path.stat().st_size < base.stat().st_size / 5  # the adapters only, not the base
    loaded = load_adapter(path)
    assert loaded.spec == EVERYTHING and loaded.base["source"] == str(base)
    assert set(loaded.base["fingerprint"]) == {"ar", "nar"}
    model = tiny()
    merge_adapter_files(model, [path], base_name=str(base))
    for k, v in merged.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match="is an adapter file"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not an adapter file"):
        load_adapter(base)


def test_wrong_base_is_refused_in_one_line(tmp_path):
    _, path, _ = _adapter_file(tmp_path)
    other = tiny()
    with torch.no_grad():
        other.nar_decoder.layers[1].linear2.weight[0, 0] += 1e-3  # one weight of the NAR half differs
    with pytest.raises(UserError, match=r"made for base .*NAR weights") as e:
        merge_adapter_files(other, [path], base_name="other.pt")
    assert "\n" not in str(e.value)
    bigger = load_model(TINY / "tiny.pt", nhead=2)[0]  # another layout
    with pytest.raises(UserError, match="nhead 4 vs 2"):
        merge_adapter_files(bigger, [path], base_name="bigger.pt")
    with pytest.raises(UserError, match="one adapter per half"):
        merge_adapter_files(tiny(), [path, path], base_name="base.pt")


def test_load_for_inference_merges_adapters_and_checks_their_tokenizer(tmp_path):
    from valle.inference import checkpoint_tokenizer, load_for_inference

    base, path, merged = _adapter_file(tmp_path)
    speaking = load_for_inference(base, [path], device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(greedy_codes(speaking.model), greedy_codes(merged)))
    espeak = load_adapter(path)
    espeak.tokenizer = {"name": "espeak", "vocab": {"_": 0, "a": 1}}
    with pytest.raises(UserError, match="voice.pt vs .*base.pt: text tokenizer mismatch"):
        checkpoint_tokenizer(None, [(str(path), espeak)], where=str(base))  # the base stores none: vallex


def test_evaluation_merges_adapters(tmp_path, random_codec):
    """valle evaluate --adapter: every checkpoint speaks with the adapters merged, as valle infer --adapter."""
    import soundfile as sf
    from lhotse import MonoCut, SupervisionSegment

    from valle.eval.evaluate import Item, Scorer, evaluate_checkpoint

    base, path, merged = _adapter_file(tmp_path)
    merged_file = save_checkpoint(tmp_path / "merged.pt", merged)
    sup = SupervisionSegment("s1", "r1", 0.0, 1.0, text="Hello there.", language="en", speaker="spk")
    items = [Item(MonoCut("u1", 0.0, 1.0, 0, supervisions=[sup]), torch.zeros(24000), None, None, float("nan"))]

    def wave(checkpoint, adapters=()):
        rows = evaluate_checkpoint(str(checkpoint), "sys", items, Scorer(None, None, distances=False), random_codec,
                                   tmp_path / "eval", preset_path=None,
                                   sampling=Sampling(top_k=1, seed=0, max_frames=40),
                                   batch_size=1, device="cpu", adapters=adapters)
        return sf.read(tmp_path / "eval" / rows[0]["wav"])[0]  # (T * 320,)

    adapted = wave(base, [str(path)])
    assert adapted.size and np.array_equal(adapted, wave(merged_file))
    assert not np.array_equal(adapted, wave(base))


def test_evaluate_takes_an_adapter_run_as_adapters_on_its_base(tmp_path, capsys):
    """./evaluate.sh after a --adapter lora run passes the run's adapter files as --checkpoint: they become
    --adapter files on the base they name, one per half; mixed with a checkpoint they are refused in one line."""
    from valle.commands.evaluate import adapter_runs, build_parser

    base, path, _ = _adapter_file(tmp_path)
    spare = save_adapter(tmp_path / "spare.pt", *[getattr(load_adapter(path), k) for k in ("spec", "weights", "base")])
    a = build_parser().parse_args(["--checkpoint", str(path), str(spare)])
    adapter_runs(a)
    assert a.checkpoint == [str(base)] and a.adapter == [str(path)]
    assert f"not evaluated, one per half: {spare}" in capsys.readouterr().out
    mixed = build_parser().parse_args(["--checkpoint", str(path), str(base)])
    with pytest.raises(UserError, match="adapter files, not checkpoints: give them with --adapter"):
        adapter_runs(mixed)
    plain = build_parser().parse_args(["--checkpoint", str(base), "vallex"])
    adapter_runs(plain)
    assert plain.checkpoint == [str(base), "vallex"] and plain.adapter is None


def run_cli(command: str, *args: str) -> int:
    """`valle COMMAND ARGS` in this process (a subprocess would spend seconds importing): its exit code."""
    import runpy
    from unittest import mock

    with mock.patch.object(sys, "argv", ["valle", command, *args]), pytest.raises(SystemExit) as e:
        runpy.run_module("valle", run_name="__main__")
    return e.value.code


def export(*args: str) -> int:
    return run_cli("export", "checkpoint", *args)


def test_export_merged_loads_strictly_as_a_released_file(tmp_path, capsys):
    base, path, merged = _adapter_file(tmp_path, spec=BOTH_HALVES)
    out = tmp_path / "merged.pt"
    assert export("--nhead", "4", "--adapter", str(path), "--", str(base), str(out)) == 0
    raw = torch.load(out, weights_only=True)
    assert list(raw) == ["model"]  # {"model": state_dict}, as released
    loaded = load_checkpoint(out, nhead=4)
    assert loaded.kind == "released" and loaded.config == tiny().config  # shared embeddings still tied
    model, _ = load_model(out, nhead=4)  # strict load into a model built from the file alone
    for k, v in merged.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    # an adapter file exported to safetensors: the same adapter, no training state
    st = tmp_path / "voice.safetensors"
    assert export(str(path), str(st)) == 0
    assert load_adapter(st).spec == BOTH_HALVES and load_adapter(st).weights.keys() == load_adapter(path).weights.keys()
    again = export("--nhead", "4", "--adapter", str(path), "--", str(out), str(tmp_path / "again.pt"))
    err = capsys.readouterr().err  # the merged file is not the adapter's base
    assert again == 2 and "made for base" in err and "AR weights" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow  # the vallex tokenizer and a codec are built: ~15 s
def test_infer_with_adapter_equals_the_merged_export(tmp_path):
    base, path, _ = _adapter_file(tmp_path, spec=BOTH_HALVES)
    out = tmp_path / "merged.pt"
    assert export("--nhead", "4", "--adapter", str(path), "--", str(base), str(out)) == 0
    common = ["--nhead", "4", "--top-k", "1", "--codec-weights", "random", "--text", "Hello there.",
              "--max-frames", "40"]
    codes = {}
    for name, extra in (("adapter", ["--checkpoint", str(base), "--adapter", str(path)]),
                        ("merged", ["--checkpoint", str(out)]), ("base", ["--checkpoint", str(base)])):
        assert run_cli("infer", *common, *extra, "--output", str(tmp_path / f"{name}.wav"), "--save-codes",
                       str(tmp_path / f"{name}.npy")) == 0
        codes[name] = np.load(tmp_path / f"{name}.npy")
    assert codes["adapter"].shape[0] > 0 and np.array_equal(codes["adapter"], codes["merged"])
    assert not np.array_equal(codes["adapter"], codes["base"])


# ---- training --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("init") / "init-tiny.pt"
    subprocess.run([sys.executable, "-m", "valle", "init-checkpoint", "--output", str(path), "--d-model",
                    "64", "--nhead", "4", "--num-layers", "2"], check=True, capture_output=True, env=ENV)
    return path


def adapter_cfg(data: Path, exp: Path, init: Path, **train) -> ExperimentConfig:
    return ExperimentConfig(
        ModelConfig(), DataConfig(manifest_dir=str(data), num_workers=0, max_duration=12, num_buckets=2),
        OptimConfig(base_lr=0.05, warmup_steps=5),
        TrainConfig(**{"exp_dir": str(exp), "init_checkpoint": str(init), "device": "cpu", "log_interval": 1,
                       "num_epochs": 100, **train}),
        AdapterConfig(adapter="lora", lora_targets="attn,ffn,predict"))


@pytest.mark.slow
@pytest.mark.parametrize("half", ["ar", "nar"])
def test_adapter_run_lowers_dev_loss_and_changes_only_the_adapters(mini_data, init_ckpt, tmp_path, half):
    from valle.training.trainer import Trainer

    exp = tmp_path / half
    trainer = Trainer(adapter_cfg(mini_data, exp, init_ckpt, model_name=half, max_steps=30, valid_interval=15,
                                  trainable=(rf"{half}_decoder\.norm\.",)), {})
    base = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    adapter_ids = {id(p) for _, p in trainer.adapters.named_adapter_parameters()}
    trainer.fit()
    valid = metrics(exp, "valid")
    assert valid[-1]["loss"] < valid[0]["loss"] - 0.1, valid
    trained_base = {n for n, _ in trainer.trainable if ".lora_" not in n}
    assert trained_base and all(n.startswith(f"{half}_decoder.norm.") for n in trained_base)
    for k, v in trainer.model.state_dict().items():  # every other base tensor is bitwise unchanged
        assert torch.equal(v, base[k]) != (k in trained_base), k
    state_ids = {id(p) for p in trainer.optimizer.state}
    assert adapter_ids <= state_ids and len(state_ids - adapter_ids) == len(trained_base)
    best = load_adapter(exp / "best-valid-loss.pt")
    assert best.spec.halves == (half,) and set(best.weights) - {n for n, _ in trainer.trainable} == set()
    assert best.base["source"] == str(init_ckpt.resolve()) and best.tokenizer["name"] == "vallex"
    assert (exp / "last.pt").stat().st_size < 2_000_000
    assert "adapter: lora" in (exp / "config.yaml").read_text()
    other = adapter_cfg(mini_data, exp, init_ckpt, model_name=half, resume=True)
    other.adapter.lora_rank = 4
    with pytest.raises(UserError, match="resume with the run's own"):
        Trainer(other, {})


@pytest.mark.slow
def test_adapter_run_sigkill_then_resume_gives_identical_losses(mini_data, init_ckpt, tmp_path):
    def args(exp: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "valle", "train", "--manifest-dir", str(mini_data), "--exp-dir",
                str(exp), "--device", "cpu", "--num-workers", "0", "--max-duration", "12", "--num-buckets", "2",
                "--log-interval", "1", "--num-epochs", "100", "--model-name", "ar", "--init-checkpoint",
                str(init_ckpt), "--max-steps", "16", "--save-every-n", "6", "--valid-interval", "100",
                "--adapter", "lora", "--lora-dropout", "0.1", "--activation-checkpointing", "true", *extra]

    straight = tmp_path / "straight"
    subprocess.run(args(straight), check=True, capture_output=True, env=ENV, cwd=REPO)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args(killed), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not any(r["step"] >= 8 for r in train_metrics_so_far(killed)):
        assert time.time() < deadline and proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(args(killed, "--resume", "true"), capture_output=True, text=True, env=ENV, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {r["step"]: r["loss"] for r in metrics(straight, "train")}
    logged = metrics(killed, "train")
    assert logged[-1]["step"] == 16 and len(logged) == 16
    for r in logged:
        assert r["loss"] == expected[r["step"]], (r["step"], r["loss"], expected[r["step"]])


@pytest.mark.slow
def test_two_process_ddp_adapter_replicas_stay_identical(mini_data, init_ckpt, tmp_path):
    exp = tmp_path / "exp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run([*launcher, "-m", "valle", "train", "--manifest-dir", str(mini_data), "--exp-dir",
                    str(exp), "--device", "cpu", "--num-workers", "0", "--max-duration", "12", "--num-buckets", "2",
                    "--model-name", "nar", "--init-checkpoint", str(init_ckpt), "--max-steps", "4",
                    "--valid-interval", "2", "--adapter", "lora", "--lora-targets", "attn,ffn,predict"],
                   check=True, capture_output=True, env=ENV, cwd=REPO, timeout=600)
    checksums = [[line.split("checksum ")[1] for line in (exp / "log" / f"train-rank{r}.log").read_text().splitlines()
                  if "parameter checksum" in line] for r in (0, 1)]
    assert checksums[0] and checksums[0] == checksums[1]
    assert load_adapter(exp / "last.pt").spec.halves == ("nar",)


def test_adapter_needs_a_base(tmp_path):
    from valle.text import get_tokenizer
    from valle.training.trainer import Trainer

    data = tmp_path / "data"
    data.mkdir()
    (data / "text_tokenizer.json").write_text(json.dumps(get_tokenizer("vallex").to_dict()))
    cfg = adapter_cfg(data, tmp_path / "exp", Path("none"), model_name="ar")
    cfg.train.init_checkpoint = "none"
    with pytest.raises(UserError, match="--init-checkpoint vallex or PATH"):
        Trainer(cfg, {})


def test_old_config_yaml_without_adapter_section_loads(tmp_path):
    cfg = ExperimentConfig(ModelConfig(), DataConfig(), OptimConfig(), TrainConfig())
    path = tmp_path / "config.yaml"
    cfg.save_yaml(path)
    assert ExperimentConfig.load_yaml(path) == cfg
    import yaml

    d = yaml.safe_load(path.read_text())
    del d["adapter"], d["train"]["activation_checkpointing"]
    path.write_text(yaml.safe_dump(d))
    assert ExperimentConfig.load_yaml(path) == cfg
