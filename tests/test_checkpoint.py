"""Checkpoint formats, safe loading, strict loading with a grouped report, export round trips, download."""

from __future__ import annotations

import builtins
import json
import os
import pathlib
import pickle
import re
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pytest
import torch

from valle import safe_load
from valle.config import ModelConfig
from valle.errors import UserError
from valle.models import checkpoint as ckpt
from valle.models.checkpoint import (
    FORMAT_TAG,
    CheckpointError,
    build,
    expected_layout,
    export_released,
    export_safetensors,
    formats,
    hub,
    layout_report,
    load_checkpoint,
    load_model,
    load_state_dict_strict,
    resolve_checkpoint,
    save_checkpoint,
    verify_layout,
)
from valle.models.valle import VALLE

DATA = Path(__file__).parent / "data"
TINY = DATA / "vallex_tiny" / "tiny.pt"  # released layout, d 64, 4 heads, 2 layers, random weights
TINY_CONFIG = ModelConfig(d_model=64, nhead=4, num_layers=2)


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    return torch.load(TINY, map_location="cpu", weights_only=True)["model"]


@pytest.fixture()
def tiny_model() -> VALLE:
    model, _ = load_model(TINY, nhead=4)
    return model


def assert_same_tensors(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def assert_one_line(e: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg


def prenet_keys(prefix: str, d: int) -> dict[str, torch.Tensor]:
    """The tensors lifeiteng's optional text prenet adds (Conv1d/BatchNorm1d at 1,2,5,6,9,10; Linear 14)."""
    sd = {}
    for conv, bn in ((1, 2), (5, 6), (9, 10)):
        sd[f"{prefix}.{conv}.weight"], sd[f"{prefix}.{conv}.bias"] = torch.zeros(d, d, 5), torch.zeros(d)
        for name in ("weight", "bias", "running_mean", "running_var"):
            sd[f"{prefix}.{bn}.{name}"] = torch.zeros(d)
        sd[f"{prefix}.{bn}.num_batches_tracked"] = torch.tensor(0)
    sd[f"{prefix}.14.weight"], sd[f"{prefix}.14.bias"] = torch.zeros(d, d), torch.zeros(d)
    return sd  # 23 tensors


# ---- reading the three kinds --------------------------------------------------------------------

def test_released_file_config_from_shapes():
    loaded = load_checkpoint(TINY, nhead=4)
    assert loaded.kind == "released" and loaded.tokenizer is None and loaded.train_state is None
    assert loaded.config == ModelConfig(d_model=64, nhead=4, num_layers=2, text_vocab_size=2048,
                                        audio_vocab_size=1024, num_quantizers=8, num_languages=3,
                                        share_embedding=True, add_prenet=False)
    assert load_checkpoint(TINY).config.nhead == 16  # as released, when the file cannot tell


def test_released_file_with_extra_keys_and_pickled_paths(tiny_sd, tmp_path):
    class WindowsPathFromTraining(PureWindowsPath):  # pickles as pathlib.WindowsPath, as on Windows
        def __reduce__(self):
            return pathlib.WindowsPath, (str(self),)

    path = tmp_path / "released.pt"
    torch.save({"model": tiny_sd, "exp_dir": Path("/exp/valle"),
                "manifest": WindowsPathFromTraining("C:/data/manifests"), "note": "v1"}, path)
    loaded = load_checkpoint(path, nhead=4)
    assert loaded.kind == "released" and loaded.config == TINY_CONFIG
    assert_same_tensors(loaded.state_dict, tiny_sd)


def test_bare_state_dict_reads_as_released(tiny_sd, tmp_path):
    torch.save(dict(tiny_sd), tmp_path / "bare.pt")
    loaded = load_checkpoint(tmp_path / "bare.pt", nhead=4)
    assert loaded.kind == "released" and loaded.config == TINY_CONFIG


def test_icefall_checkpoint_with_ddp_prefix_and_training_params(tiny_sd, tmp_path):
    """lifeiteng's trainer: icefall save_checkpoint's entries plus the params dict flattened in."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    opt.step()
    path = tmp_path / "epoch-3.pt"
    torch.save({"model": {f"module.{k}": v for k, v in tiny_sd.items()},
                "optimizer": opt.state_dict(), "scheduler": {"base_lrs": [0.05], "last_epoch": 7},
                "grad_scaler": None, "sampler": {"epoch": 3, "world_size": 1, "diagnostics": {"kept": 10}},
                "batch_idx_train": 1200, "cur_epoch": 3, "best_valid_loss": np.float64(4.25),
                "exp_dir": Path("exp/valle"), "decoder_dim": 64, "nhead": 4, "num_decoder_layers": 2,
                "prefix_mode": 2, "add_prenet": False, "env_info": {"torch-version": "2.0.1"}}, path)
    loaded = load_checkpoint(path)
    assert loaded.kind == "icefall"
    assert loaded.config == ModelConfig(d_model=64, nhead=4, num_layers=2, prefix_mode=2)
    assert_same_tensors(loaded.state_dict, tiny_sd)  # "module." stripped
    state = loaded.train_state
    assert state["batch_idx_train"] == 1200 and state["best_valid_loss"] == 4.25
    assert state["exp_dir"] == PurePosixPath("exp/valle") and state["sampler"]["epoch"] == 3
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, nhead=8)
    assert_one_line(e, "epoch-3.pt", "nhead 4", "nhead 8")


def test_share_embedding_and_prenet_detected(tiny_sd):
    untied = {k: v.clone() for k, v in tiny_sd.items()}
    untied["nar_predict_layers.0.weight"] += 1
    assert ckpt.config_from_state_dict(untied, 4).share_embedding is False
    copied = {k: v.clone() for k, v in tiny_sd.items()}  # equal values, separate memory: still tied
    assert ckpt.config_from_state_dict(copied, 4).share_embedding is True
    with_prenet = {**tiny_sd, **prenet_keys("ar_text_prenet", 64)}
    assert ckpt.config_from_state_dict(with_prenet, 4).add_prenet is True


def test_nhead_must_divide_d_model():
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(TINY, nhead=5)
    assert_one_line(e, "tiny.pt", "d_model 64", "nhead 5")


# ---- refusing unsafe or broken files ------------------------------------------------------------

class _Evil:
    def __init__(self, call):
        self.call = call

    def __reduce__(self):
        return self.call


class _Custom:
    """A harmless class from somewhere: still not plain data."""


@pytest.mark.parametrize("save", ["torch", "pickle"])
@pytest.mark.parametrize("payload", ["os.system", "builtins.exec"])
def test_malicious_pickle_is_refused_without_running(tmp_path, save, payload):
    marker = tmp_path / "marker"
    call = ((os.system, (f"touch {marker}",)) if payload == "os.system"
            else (builtins.exec, (f"open({str(marker)!r}, 'w').close()",)))
    path = tmp_path / "evil.pt"
    obj = {"extra": _Evil(call), "model": {"w": torch.zeros(1)}}
    if save == "torch":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    wanted = "system" if payload == "os.system" else "exec"
    assert_one_line(e, "evil.pt", "refused", wanted, "nothing from the file was run")
    assert not marker.exists()


def test_unknown_class_is_refused_by_name(tiny_sd, tmp_path):
    torch.save({"model": tiny_sd, "params": _Custom()}, tmp_path / "custom.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "custom.pt")
    assert_one_line(e, "custom.pt", "refused", "_Custom")


def test_broken_files_give_one_line_errors(tmp_path):
    cases = {
        "missing.pt": ("no such checkpoint file", "--checkpoint"),
        "truncated.pt": ("truncated or corrupt",),
        "garbage.pt": ("truncated or corrupt",),
        "list.pt": ("not a VALL-E X checkpoint",),
        "options.pt": ("has no 'model' state dict", "lr"),
        "resnet.pt": ("not a VALL-E X checkpoint", "ar_text_embedding"),
        "weird_model.pt": ("not a state dict of named tensors",),
        "bad.safetensors": ("truncated or corrupt",),
    }
    (tmp_path / "truncated.pt").write_bytes(TINY.read_bytes()[:50_000])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"lr": 0.1, "epochs": 3}, tmp_path / "options.pt")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "resnet.pt")
    torch.save({"model": [1, 2]}, tmp_path / "weird_model.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    for name, fragments in cases.items():
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(tmp_path / name)
        assert_one_line(e, name, *fragments)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    assert_one_line(e, str(tmp_path), "is a directory")


# ---- strict loading with a grouped report -------------------------------------------------------

def report_lines(e: pytest.ExceptionInfo) -> list[str]:
    return [line.strip() for line in str(e.value).splitlines()[1:]]


def test_prenet_checkpoint_refused_with_grouped_report(tiny_sd):
    sd = {**tiny_sd, **prenet_keys("ar_text_prenet", 64), **prenet_keys("nar_text_prenet", 64)}
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(VALLE(TINY_CONFIG), sd, source="prenet.pt")
    assert str(e.value).startswith("prenet.pt does not fit the model:")
    assert report_lines(e) == [
        "unexpected: ar_text_prenet.* (23 tensors): the checkpoint was trained with a prenet "
        "(build with --add-prenet true)",
        "unexpected: nar_text_prenet.* (23 tensors): the checkpoint was trained with a prenet "
        "(build with --add-prenet true)",
    ]


def test_prenet_model_refuses_checkpoint_without_prenet():
    with pytest.raises(CheckpointError) as e:
        load_model(TINY, nhead=4, add_prenet=True)
    lines = report_lines(e)
    assert lines and all(line.startswith("missing: ") and "_prenet.* (" in line
                         and "build with --add-prenet false" in line for line in lines), lines


def test_wrong_vocab_and_depth_refused_with_grouped_report(tiny_sd):
    sd = dict(tiny_sd)
    sd["ar_text_embedding.word_embeddings.weight"] = torch.zeros(512, 64)
    sd["nar_text_embedding.word_embeddings.weight"] = torch.zeros(512, 64)
    del sd["nar_language_embedding.word_embeddings.weight"]
    model = VALLE(ModelConfig(d_model=64, nhead=4, num_layers=3))
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(model, sd)
    lines = report_lines(e)
    assert "missing: ar_decoder.layers.* (layers 2, 12 tensors)" in lines
    assert any(re.fullmatch(r"missing: nar_decoder\.layers\.\* \(layers 2, \d+ tensors\)", x) for x in lines)
    assert ("missing: nar_language_embedding.word_embeddings.weight: the checkpoint has no language "
            "embedding: a monolingual VALL-E, not VALL-E X") in lines
    assert "shape mismatch: ar_text_embedding.word_embeddings.weight checkpoint [512, 64] vs model [2048, 64]" \
        in lines
    assert "shape mismatch: nar_text_embedding.word_embeddings.weight checkpoint [512, 64] vs model [2048, 64]" \
        in lines
    assert not any(x.startswith("unexpected") for x in lines)


def test_layer_indices_collapse_in_shape_report():
    expected = {f"ar_decoder.layers.{i}.linear1.weight": (4096, 1024) for i in range(12)}
    found = {k: (2048, 1024) for k in expected}
    assert layout_report(expected, found) == [
        "shape mismatch: ar_decoder.layers.*.linear1.weight (12 tensors) checkpoint [2048, 1024] "
        "vs model [4096, 1024]"]
    dropped = ("ar_decoder.layers.3.", "ar_decoder.layers.4.")
    found = {k: v for k, v in expected.items() if not k.startswith(dropped)}
    assert layout_report(found, expected) == ["unexpected: ar_decoder.layers.* (layers 3-4, 2 tensors)"]


def test_untied_checkpoint_refused_by_tied_model_but_loads_untied(tiny_sd):
    sd = {k: v.clone() for k, v in tiny_sd.items()}
    for j in range(6):
        sd[f"nar_predict_layers.{j}.weight"] += 1.0
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(VALLE(TINY_CONFIG), sd)
    assert report_lines(e) == [
        "tied: nar_audio_embeddings.* and nar_predict_layers.* share weights in the model but differ in the "
        "checkpoint (6 pairs): it was trained without a shared embedding (build with --share-embedding false)"]
    model = VALLE(ModelConfig(d_model=64, nhead=4, num_layers=2, share_embedding=False))
    load_state_dict_strict(model, sd)
    assert_same_tensors(model.state_dict(), sd)


def test_load_model_is_strict_tied_and_in_eval_mode(tiny_sd):
    model, loaded = load_model(TINY, nhead=4)
    assert not model.training and loaded.kind == "released" and loaded.config == TINY_CONFIG
    state = model.state_dict()
    assert_same_tensors(state, tiny_sd)
    for j in range(6):  # built without random init, tied again: one Parameter per pair
        assert model.nar_predict_layers[j].weight is model.nar_audio_embeddings[j + 2].word_embeddings.weight
    fresh = [p.requires_grad for p in VALLE(TINY_CONFIG).parameters()]
    assert [p.requires_grad for p in model.parameters()] == fresh  # same count: ties not duplicated
    untied, loaded = load_model(TINY, nhead=4, share_embedding=False, dropout=0.0)
    assert loaded.config.share_embedding is False and loaded.config.dropout == 0.0
    state = untied.state_dict()
    assert state["nar_predict_layers.0.weight"].data_ptr() != \
        state["nar_audio_embeddings.2.word_embeddings.weight"].data_ptr()
    assert_same_tensors(state, tiny_sd)
    with pytest.raises(UserError, match="unknown model setting"):
        load_model(TINY, nhead=4, n_heads=4)


def test_model_with_state_outside_its_state_dict_is_built_normally(monkeypatch):
    class WithTable(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(2))
            self.register_buffer("table", torch.arange(4.0), persistent=False)

    monkeypatch.setattr(build, "VALLE", WithTable)
    model = build._empty_model(TINY_CONFIG, "cpu")
    assert torch.equal(model.table, torch.arange(4.0))


# ---- saving and export round trips --------------------------------------------------------------

def test_export_released_round_trip_identical_and_tied(tiny_model, tiny_sd, tmp_path):
    out = export_released(tiny_model, tmp_path / "exported.pt")
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert list(raw) == ["model"]
    assert_same_tensors(raw["model"], tiny_sd)
    for j in range(6):  # stored once, as released: other VALL-E X tools see the tie
        assert raw["model"][f"nar_predict_layers.{j}.weight"].data_ptr() == \
            raw["model"][f"nar_audio_embeddings.{j + 2}.word_embeddings.weight"].data_ptr()
    again = load_checkpoint(out, nhead=4)
    assert again.kind == "released" and again.config == TINY_CONFIG
    assert_same_tensors(again.state_dict, tiny_sd)
    assert abs(out.stat().st_size - TINY.stat().st_size) < 0.02 * TINY.stat().st_size
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind


def test_toolkit_save_load_round_trip(tiny_model, tiny_sd, tmp_path):
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    tiny_model.train()
    for p in tiny_model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    tokenizer = {"name": "vallex", "vocab": {"_": 5, "a": 6, "ʃ": 40}}
    train_state = {"progress": {"step": 12, "epoch": 2, "best_valid_loss": float("inf")},
                   "optimizer": opt.state_dict(), "rng": [{"torch": torch.get_rng_state(),
                                                          "python": (3, (1, 2, 3), None)}],
                   "experiment": {"exp_dir": "exp/x", "data": Path("data/tokenized")}}
    path = save_checkpoint(tmp_path / "last.pt", tiny_model, tokenizer=tokenizer, train_state=train_state)
    with torch.serialization.safe_globals(safe_load._allowed_globals()):
        assert torch.load(path, map_location="cpu", weights_only=True)["format"] == FORMAT_TAG
    loaded = load_checkpoint(path)
    assert loaded.kind == "toolkit" and loaded.config == tiny_model.config
    assert loaded.tokenizer == tokenizer
    assert_same_tensors(loaded.state_dict, tiny_model.state_dict())
    state = loaded.train_state
    assert state["progress"] == train_state["progress"] and state["rng"][0]["python"] == (3, (1, 2, 3), None)
    assert torch.equal(state["rng"][0]["torch"], train_state["rng"][0]["torch"])
    assert state["experiment"]["data"] == PurePosixPath("data/tokenized")
    fresh = torch.optim.AdamW(VALLE(TINY_CONFIG).parameters(), lr=1e-3)
    fresh.load_state_dict(state["optimizer"])  # resumable
    assert fresh.state_dict()["state"][0]["step"] == 1
    model, again = load_model(path)
    assert again.kind == "toolkit" and not model.training
    assert_same_tensors(model.state_dict(), tiny_model.state_dict())
    assert not torch.equal(model.state_dict()["ar_decoder.norm.weight"], tiny_sd["ar_decoder.norm.weight"])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, nhead=8)
    assert_one_line(e, "last.pt", "nhead 4", "drop --nhead")


def test_save_is_atomic_and_refuses_non_plain_state(tiny_model, tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", tiny_model, train_state={"step": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"train_state\['sampler'\] is a _Custom"):
        save_checkpoint(path, tiny_model, train_state={"step": 2, "sampler": _Custom()})

    def crash(obj, f):
        Path(f).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny_model, train_state={"step": 3})
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_toolkit_file_from_another_version_is_refused(tiny_sd, tmp_path):
    config = TINY_CONFIG.to_dict()
    torch.save({"format": "valle-toolkit/9", "model": tiny_sd, "config": config}, tmp_path / "new.pt")
    torch.save({"format": FORMAT_TAG, "model": tiny_sd, "config": {**config, "flux": 2}}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "new.pt")
    assert_one_line(e, "new.pt", "valle-toolkit/9", "upgrade")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "odd.pt")
    assert_one_line(e, "odd.pt", "flux", "upgrade")


def test_safetensors_round_trip_restores_ties(tiny_model, tiny_sd, tmp_path):
    from safetensors import safe_open

    tokenizer = {"name": "vallex", "vocab": {"a": 6}}
    out = export_safetensors(tiny_model, tmp_path / "model.safetensors", tokenizer=tokenizer)
    with safe_open(str(out), framework="pt") as f:
        assert len(list(f.keys())) == len(tiny_sd) - 6  # each tied pair stored once
        meta = f.metadata()
    ties = {f"nar_predict_layers.{j}.weight": f"nar_audio_embeddings.{j + 2}.word_embeddings.weight" for j in range(6)}
    assert {k: meta[k] for k in ties} == ties  # safetensors' save_model notes {dropped: kept}
    loaded = load_checkpoint(out)
    assert loaded.kind == "toolkit" and loaded.config == TINY_CONFIG and loaded.tokenizer == tokenizer
    assert_same_tensors(loaded.state_dict, tiny_sd)
    assert loaded.state_dict["nar_predict_layers.0.weight"] is \
        loaded.state_dict["nar_audio_embeddings.2.word_embeddings.weight"]
    model, _ = load_model(out)
    assert_same_tensors(model.state_dict(), tiny_sd)


def test_safetensors_from_earlier_versions_still_read(tiny_model, tiny_sd, tmp_path):
    """Earlier exports kept the ties as one JSON entry, `tied`: {alias: stored key}."""
    from safetensors.torch import save_file

    ties = {f"nar_predict_layers.{j}.weight": f"nar_audio_embeddings.{j + 2}.word_embeddings.weight" for j in range(6)}
    stored = {k: v.clone().contiguous() for k, v in tiny_sd.items() if k not in ties}
    save_file(stored, str(tmp_path / "old.safetensors"), metadata={
        "format": FORMAT_TAG, "config": json.dumps(TINY_CONFIG.to_dict()), "tied": json.dumps(ties)})
    loaded = load_checkpoint(tmp_path / "old.safetensors")
    assert loaded.kind == "toolkit" and loaded.config == TINY_CONFIG
    assert_same_tensors(loaded.state_dict, tiny_sd)
    assert loaded.state_dict["nar_predict_layers.0.weight"] is \
        loaded.state_dict["nar_audio_embeddings.2.word_embeddings.weight"]


def test_foreign_safetensors_reads_as_released(tiny_sd, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.clone().contiguous() for k, v in tiny_sd.items()}, str(tmp_path / "other.safetensors"))
    loaded = load_checkpoint(tmp_path / "other.safetensors", nhead=4)
    assert loaded.kind == "released" and loaded.config == TINY_CONFIG  # tie found from equal values
    assert_same_tensors(loaded.state_dict, tiny_sd)


# ---- the released layout ------------------------------------------------------------------------

def released_layout_from_reference() -> tuple[dict[str, tuple], list[list[str]]]:
    """tests/data/vallex_state_dict.txt: `key [shape]` lines, then summary lines (SHARED lists the ties)."""
    layout, shared = {}, []
    for line in (DATA / "vallex_state_dict.txt").read_text().splitlines():
        m = re.fullmatch(r"(\S+\.\S+) \[([\d, ]*)\]", line.strip())
        if m:
            layout[m.group(1)] = tuple(int(x) for x in m.group(2).split(",") if x.strip())
        elif line.startswith("SHARED "):
            shared = json.loads(line[len("SHARED "):].replace("'", '"'))
    return layout, shared


def meta_state_dict(layout: dict[str, tuple]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in layout.items()}


def test_released_layout_accepted_and_changes_rejected():
    layout, shared = released_layout_from_reference()
    assert len(layout) == 374 and expected_layout() == layout
    assert sorted(map(sorted, shared)) == sorted(sorted(pair) for pair in formats._tie_pairs(8))
    verify_layout(meta_state_dict(layout))

    changed = dict(layout)
    changed["ar_text_embedding.word_embeddings.weight"] = (512, 1024)
    del changed["ar_predict_layer.weight"]
    changed["ar_audio_prenet.0.weight"] = (256, 1024)
    with pytest.raises(CheckpointError) as e:
        verify_layout(meta_state_dict(changed), source="mirror.pt")
    assert str(e.value).startswith("mirror.pt is not in the expected layout:")
    assert report_lines(e) == [
        "missing: ar_predict_layer.weight",
        "unexpected: ar_audio_prenet.0.weight: the checkpoint was trained with a prenet "
        "(build with --add-prenet true)",
        "shape mismatch: ar_text_embedding.word_embeddings.weight checkpoint [512, 1024] vs model [2048, 1024]",
    ]
    with pytest.raises(CheckpointError):
        verify_layout(meta_state_dict(layout), ModelConfig(num_layers=11))


# ---- resolving "vallex": caches, download, verification -----------------------------------------

@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    for var in (ckpt.ENV_REPO, ckpt.ENV_FILENAME, ckpt.ENV_URL, "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(ckpt.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_hub(monkeypatch, calls: list, source: Path = TINY):
    """huggingface_hub.hf_hub_download as it lays out its cache (refs/main, snapshot link -> blob), no network."""
    import huggingface_hub

    def download(repo_id, filename, cache_dir=None, **kw):
        calls.append((repo_id, filename, cache_dir))
        repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        (repo / "blobs").mkdir(exist_ok=True)
        blob = repo / "blobs" / "etag"
        shutil.copyfile(source, blob)
        snapshot = repo / "snapshots" / commit / filename
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "_check_reachable", lambda url: None)  # this machine has no route to the Hub


def no_download(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded from the Hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded from a URL"))


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.parent.name != "refs")


def test_resolve_path_and_missing_path(tmp_path):
    assert resolve_checkpoint(TINY) == TINY
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint(tmp_path / "nope.pt")
    assert_one_line(e, "nope.pt", "--checkpoint vallex")


def test_resolve_vallex_downloads_verifies_and_uses_the_hub_cache(cache, monkeypatch):
    calls = []
    fake_hub(monkeypatch, calls)
    path = resolve_checkpoint("vallex", expected=TINY_CONFIG)
    assert path.read_bytes() == TINY.read_bytes() and path.is_relative_to(cache / "models--Plachta--VALL-E-X")
    assert calls == [("Plachta/VALL-E-X", "vallex-checkpoint.pt", cache)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a cached file is used without the network
    assert resolve_checkpoint("vallex", expected=TINY_CONFIG) == path and len(calls) == 1
    model, loaded = load_model("vallex", nhead=4)
    assert loaded.kind == "released" and len(calls) == 1


def test_resolve_vallex_copied_file_comes_first(cache, monkeypatch):
    cache.mkdir()
    shutil.copyfile(TINY, cache / "vallex-checkpoint.pt")
    no_download(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint("vallex") == cache / "vallex-checkpoint.pt"


def test_resolve_vallex_mirror_settings_from_env(cache, monkeypatch):
    calls = []
    fake_hub(monkeypatch, calls)
    monkeypatch.setenv(ckpt.ENV_REPO, "someone/vallex-mirror")
    monkeypatch.setenv(ckpt.ENV_FILENAME, "weights.pt")
    assert resolve_checkpoint("vallex", expected=TINY_CONFIG).name == "weights.pt"
    assert calls == [("someone/vallex-mirror", "weights.pt", cache)]


def test_hub_cache_is_the_hubs_default_without_valle_cache_dir(monkeypatch):
    monkeypatch.delenv(ckpt.ENV_CACHE_DIR, raising=False)
    assert hub.hub_cache_dir() is None and ckpt.cache_dir().name == "valle-toolkit"


@pytest.mark.parametrize("via", ["hub", "url"])
def test_resolve_vallex_rejects_wrong_layout_and_keeps_caches_clean(cache, monkeypatch, via):
    import huggingface_hub

    if via == "hub":
        fake_hub(monkeypatch, [])
    else:
        monkeypatch.setenv(ckpt.ENV_URL, TINY.resolve().as_uri())
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint("vallex")  # expects the full-size layout; tiny.pt is not it
    msg = str(e.value)
    assert "not in the expected layout" in msg and "shape mismatch" in msg and "--checkpoint PATH" in msg
    assert files_under(cache) == []
    assert huggingface_hub.try_to_load_from_cache("Plachta/VALL-E-X", "vallex-checkpoint.pt", cache_dir=cache) is None


def test_resolve_vallex_failed_download_says_where_to_get_it(cache, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(hub, "_check_reachable", lambda url: None)
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint("vallex")
    assert_one_line(e, "https://huggingface.co/Plachta/VALL-E-X/resolve/main/vallex-checkpoint.pt",
                    "name resolution", "--checkpoint PATH", ckpt.ENV_URL)
    assert not (cache / "vallex-checkpoint.pt").exists()


def test_download_from_plain_url(cache, monkeypatch):
    monkeypatch.setenv(ckpt.ENV_URL, TINY.resolve().as_uri())  # file:// stands in for a mirror's https URL
    path = resolve_checkpoint("vallex", expected=TINY_CONFIG)
    assert path == cache / "vallex-checkpoint.pt" and path.read_bytes() == TINY.read_bytes()
    assert files_under(cache) == [path]  # the download folder is gone
    no_download(monkeypatch)
    assert resolve_checkpoint("vallex", expected=TINY_CONFIG) == path  # then a cache hit


def test_download_from_https_url_through_torch_hub(cache, monkeypatch):
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        shutil.copyfile(TINY, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(hub, "_check_reachable", lambda url: None)
    monkeypatch.setenv(ckpt.ENV_URL, "https://mirror.example/vallex-checkpoint.pt")
    assert resolve_checkpoint("vallex", expected=TINY_CONFIG) == cache / "vallex-checkpoint.pt"
    assert calls == ["https://mirror.example/vallex-checkpoint.pt"]


def test_offline_is_said_at_once_with_the_flag_and_the_cache_path(cache, monkeypatch):
    import time

    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # nothing listens on the discard port
    no_download(monkeypatch)  # no retries: the host was probed first
    start = time.monotonic()
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint("vallex", flag="--init-checkpoint")
    assert time.monotonic() - start < 5
    assert_one_line(e, "127.0.0.1 cannot be reached", "--init-checkpoint PATH", str(cache / "vallex-checkpoint.pt"),
                    "--init-checkpoint none")
    monkeypatch.setenv(ckpt.ENV_URL, "https://127.0.0.1:9/vallex-checkpoint.pt")
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint("vallex")
    assert_one_line(e, "127.0.0.1 cannot be reached", "--checkpoint PATH")
    monkeypatch.delenv(ckpt.ENV_URL)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint("vallex")
    assert_one_line(e, "HF_HUB_OFFLINE", "--checkpoint PATH")
    assert "none" not in str(e.value)
