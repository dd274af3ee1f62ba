"""The fast paths give the plain path's results: static-shape AR decoding (eager, CUDA graph, inductor) and its
batched end check, bf16/fp16 inference, and the training switches (bf16 autocast, torch.compile, fused SDPA kernels).
Tests marked `cuda` run on a GPU only (`make gpu-check`)."""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from valle.config import ModelConfig
from valle.errors import UserError
from valle.models.checkpoint import load_model
from valle.models.valle import VALLE, Sampling

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "vallex_tiny"
GREEDY = Sampling(top_k=1)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def tiny(device: str = "cpu") -> VALLE:
    return load_model(TINY / "tiny.pt", nhead=4, device=device)[0].eval()


def items(device: str = "cpu", n: int = 3) -> tuple[list, list, list]:
    """n items with different text and prompt lengths (one without a prompt): text, langs, prompt codes."""
    g = torch.Generator().manual_seed(1)
    text = [torch.randint(5, 70, (4 + 3 * i,), generator=g) for i in range(n)]
    prompts = [torch.randint(0, 1024, (7 * i, 8), generator=g) for i in range(n)]
    return ([t.to(device) for t in text], [torch.zeros_like(t).to(device) for t in text],
            [p.to(device) for p in prompts])


def eos_prone(model: VALLE) -> VALLE:
    """EOS made about as likely as a favourite code: items stop at EOS, at different steps."""
    text, langs, prompts = items(str(model.ar_predict_layer.weight.device))
    first = model.generate_ar(text[:1], langs[:1], prompts[:1], Sampling(top_k=1, max_frames=40))[0]
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.ar_predict_layer.weight[m.eos] = m.ar_predict_layer.weight[int(first[8:].mode().values)] * 1.02
    return m


def random_batch(device: str = "cpu", lens=((9, 40), (6, 31), (12, 25))) -> dict:
    """A padded training batch: (text length, frames) per utterance."""
    g = torch.Generator().manual_seed(2)
    L, T = max(n for n, _ in lens), max(t for _, t in lens)
    batch = {"text_tokens": torch.randint(5, 70, (len(lens), L), generator=g),
             "text_langs": torch.zeros(len(lens), L, dtype=torch.long),
             "text_lens": torch.tensor([n for n, _ in lens]),
             "codes": torch.randint(0, 1024, (len(lens), T, 8), generator=g),
             "code_lens": torch.tensor([t for _, t in lens])}
    return {k: v.to(device) for k, v in batch.items()}


def train_model(device: str = "cpu", **kw) -> VALLE:
    torch.manual_seed(0)
    return VALLE(ModelConfig(d_model=64, nhead=4, num_layers=2, dropout=0.0, **kw)).to(device).train()


# ---------------------------------------------------------------- decoding, CPU


def test_end_check_every_n_steps_gives_the_same_codes(single_thread):
    """The host looks at the device every N steps: the codes do not depend on N, nor on finished rows staying in
    the batch (the no-cache baseline drops them), greedy or sampled."""
    m = eos_prone(tiny())
    text, langs, prompts = items()
    runs = {n: m.generate_ar(text, langs, prompts, GREEDY, check_every=n) for n in (1, 3, 8, 1000)}
    lengths = [len(c) for c in runs[1]]
    assert len(set(lengths)) == 3 and all(n < 16 * len(t) for n, t in zip(lengths, text)), lengths  # EOS stops
    baseline = m.generate_ar(text, langs, prompts, GREEDY, use_cache=False)
    for codes in [*runs.values(), baseline]:
        assert all(torch.equal(a, b) for a, b in zip(codes, runs[1]))
    s = Sampling(top_k=20, seed=5)
    sampled = [m.generate_ar(text, langs, prompts, s, check_every=n) for n in (1, 8)]
    assert all(torch.equal(a, b) for a, b in zip(*sampled))


def test_min_frames_and_limits_hold_in_the_static_loop(single_thread):
    m = eos_prone(tiny())
    text, langs, prompts = items()
    held = m.generate_ar(text, langs, prompts, Sampling(top_k=1, min_frames=30, max_frames=33))
    assert all(30 <= len(c) <= 33 for c in held), [len(c) for c in held]
    assert [len(c) for c in tiny().generate_ar(text, langs, prompts, Sampling(top_k=1, max_frames=5))] == [5, 5, 5]


def test_cudagraph_mode_needs_cuda(single_thread):
    text, langs, prompts = items()
    with pytest.raises(UserError, match="cudagraph needs a CUDA device"):
        tiny().generate_ar(text, langs, prompts, Sampling(top_k=1, max_frames=4), decode_mode="cudagraph")
    with pytest.raises(UserError, match="decode mode 'fast'"):
        tiny().generate_ar(text, langs, prompts, Sampling(top_k=1, max_frames=4), decode_mode="fast")


@pytest.mark.slow
def test_inductor_step_gives_the_eager_greedy_codes(single_thread):
    """torch.compile of the static step (about 100 s to compile on a 2-core CPU, cold cache)."""
    m = tiny()
    text, langs, prompts = items()
    eager = m.generate(text, langs, prompts, [0] * 3, Sampling(top_k=1, max_frames=50))
    compiled = m.generate(text, langs, prompts, [0] * 3, Sampling(top_k=1, max_frames=50), decode_mode="inductor")
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled))


def run_infer(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """valle infer's __main__ in this process -> (exit code, stderr)."""
    import runpy

    monkeypatch.setattr(sys, "argv", ["valle", "infer", "--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4",
                                      "--codec-weights", "random", "--device", "cpu", "--text", "Hello.", *args])
    try:
        runpy.run_module("valle", run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().err


def test_bf16_inference_through_the_cli(tmp_path, monkeypatch, capsys, single_thread):
    """--precision bf16 casts the model (the codec stays float32); --compile cudagraph on a CPU is refused."""
    code, err = run_infer(monkeypatch, capsys, "--precision", "bf16", "--max-frames", "12", "--top-k", "1",
                          "--output", str(tmp_path / "a.wav"), "--save-codes", str(tmp_path / "a.npy"))
    assert code == 0, err
    codes = np.load(tmp_path / "a.npy")
    assert codes.shape == (12, 8) and 0 <= codes.min() and codes.max() < 1024
    code, err = run_infer(monkeypatch, capsys, "--compile", "cudagraph")
    assert code == 2 and "error: --compile cudagraph needs a CUDA device" in err


def test_bf16_weights_give_the_fp32_loss_within_bf16_precision(single_thread):
    model = tiny()  # eval: no dropout
    batch = random_batch()
    with torch.no_grad():
        ref = model(batch, half="ar")["loss"]
        low = copy.deepcopy(model).to(torch.bfloat16)(batch, half="ar")["loss"]
    assert abs(float(low) - float(ref)) < 0.02 * float(ref)


# ---------------------------------------------------------------- training switches, CPU


@pytest.mark.parametrize("half", ["ar", "nar"])
def test_bf16_autocast_gives_the_fp32_loss(single_thread, half):
    model, batch = train_model(prefix_mode=0), random_batch()
    ref = model(batch, half=half, **({"codebook": 3} if half == "nar" else {}))["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(batch, half=half, **({"codebook": 3} if half == "nar" else {}))["loss"]
    assert abs(low.item() - ref.item()) < 0.02 * ref.item()


@pytest.mark.slow
def test_compiled_training_forward_gives_the_same_loss_and_gradients(single_thread):
    """--compile true compiles the trainer's Objective in place (fwd + bwd by inductor; minutes on a 2-core CPU)."""
    from valle.training.objective import Objective

    for half in ("ar", "nar"):
        model, batch = train_model(prefix_mode=0), random_batch()
        objective = Objective(model, half)
        torch.manual_seed(3)  # the NAR codebook is drawn with torch's RNG
        ref = objective(batch)["loss"]
        ref.backward()
        ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        objective.compile()
        torch.manual_seed(3)
        with torch._inductor.config.patch(fallback_random=True):  # draws from torch's RNG, as eager does
            loss = objective(batch)["loss"]
        loss.backward()
        torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
        for n, g in ref_grads.items():
            torch.testing.assert_close(model.get_parameter(n).grad, g, rtol=1e-4, atol=1e-5, msg=n)


# ---------------------------------------------------------------- CUDA (make gpu-check)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("mode", ["cudagraph", "inductor"])
def test_cuda_graph_decoding_gives_the_eager_greedy_codes(mode):
    model = tiny("cuda")
    for m in (model, eos_prone(model)):
        text, langs, prompts = items("cuda")
        eager = m.generate(text, langs, prompts, [0] * 3, Sampling(top_k=1, max_frames=60))
        fast = m.generate(text, langs, prompts, [0] * 3, Sampling(top_k=1, max_frames=60), decode_mode=mode)
        assert all(torch.equal(a, b) for a, b in zip(eager, fast)), mode


@pytest.mark.cuda
@cuda
def test_decoding_syncs_with_the_host_only_every_n_steps():
    """Counted with CUDA's sync debug mode: 48 more frames cost at most 48/8 + 1 more syncs."""
    model = tiny("cuda")
    text, langs, prompts = items("cuda")

    def syncs(frames: int) -> int:
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                model.generate_ar(text, langs, prompts, Sampling(top_k=1, max_frames=frames, min_frames=frames),
                                  decode_mode="cudagraph", check_every=8)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(16)  # warm-up
    assert syncs(64) - syncs(16) <= 48 // 8 + 1


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inference_on_cuda(dtype):
    model = tiny("cuda").to(dtype)
    text, langs, prompts = items("cuda")
    codes = model.generate(text, langs, prompts, [0] * 3, Sampling(top_k=1, max_frames=30), decode_mode="cudagraph")
    assert all(c.shape == (30, 8) and 0 <= int(c.min()) and int(c.max()) < 1024 for c in codes)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("half", ["ar", "nar"])
def test_padding_masks_run_on_fused_sdpa_kernels(half):
    """With the math kernel switched off, SDPA must still run our padded, masked training batch (bf16)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, batch = train_model("cuda", prefix_mode=0), random_batch("cuda")
    kw = {"codebook": 3} if half == "nar" else {}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref = model(batch, half=half, **kw)["loss"]
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            loss = model(batch, half=half, **kw)["loss"]
            loss.backward()
    assert abs(float(loss) - float(ref)) < 0.02 * float(ref)
