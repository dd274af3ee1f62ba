"""--precision: int8 quantises every linear of both halves (weight-only, per output channel), its logits stay within
the rounding of its weights, greedy codes do not depend on the batch, adapters are merged before quantising, and a
bad name is refused in one line."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from valle.errors import UserError
from valle.inference import Request, generate, load_for_inference, load_prompt
from valle.models.checkpoint import load_model
from valle.models.layers import SelfAttention
from valle.models.precision import Int8InProjection, Int8Linear, int8_linear, quantize_int8, quantize_weight
from valle.models.valle import Sampling

TINY = Path(__file__).resolve().parent / "data" / "vallex_tiny"


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


def tiny():
    return load_model(TINY / "tiny.pt", nhead=4)[0]


def requests(n: int = 3) -> list[Request]:
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(5, 70, (6 + 3 * i,), generator=g).tolist() for i in range(n)]
    prompt = load_prompt(TINY / "prompt.npz")
    return [Request(t, ["en"] * len(t), prompt if i % 2 == 0 else None) for i, t in enumerate(ids)]


def ar_logits(model, seed: int = 0) -> torch.Tensor:
    """Teacher-forced AR logits of a fixed batch (the loss's inputs), (N, V+1)."""
    g = torch.Generator().manual_seed(seed)
    batch = {"text_tokens": torch.randint(5, 70, (2, 9), generator=g), "text_lens": torch.tensor([9, 6]),
             "text_langs": torch.zeros(2, 9, dtype=torch.long),
             "codes": torch.randint(0, 1024, (2, 40, 8), generator=g), "code_lens": torch.tensor([40, 31])}
    captured = []
    handle = model.ar_predict_layer.register_forward_hook(lambda m, args, out: captured.append(out))
    with torch.no_grad():
        model(batch, half="ar")
    handle.remove()
    return captured[0]


def test_every_linear_of_both_halves_is_int8():
    model = tiny()
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    attentions = sum(isinstance(m, SelfAttention) for m in model.modules())
    assert (linears, attentions) == (29 - 4, 4)  # 2 + 2 layers: out, ff1, ff2 each, 3 NAR norms' projections
    assert quantize_int8(model) == 29
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(isinstance(m, (Int8Linear, Int8InProjection)) for m in model.modules()) == 29
    for name, t in [*model.named_parameters(), *model.named_buffers()]:  # only embeddings, norms and biases float
        if name.endswith("weight") and t.dtype != torch.int8:
            assert "embedding" in name or "norm" in name, name


@pytest.mark.parametrize("shape", [(1, 40), (16, 1, 40), (1, 200, 40), (3, 7, 40)])
def test_int8_linear_is_the_rounded_weights(shape):
    g = torch.Generator().manual_seed(0)
    w, b, x = torch.randn(48, 40, generator=g), torch.randn(48, generator=g), torch.randn(shape, generator=g)
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8 and (q.float() * scale[:, None] - w).abs().max() <= scale.max() / 2 + 1e-6
    exact = F.linear(x, q.float() * scale[:, None], b)
    got = int8_linear(x, q, scale, b)
    # one position per sequence: bfloat16 activations (8-bit mantissa); several: float32
    steps = len(shape) == 2 or shape[-2] == 1
    tol = 2**-8 * (x.abs() @ (q.float() * scale[:, None]).abs().T) + 1e-4 if steps else 1e-4
    assert torch.all((got - exact).abs() <= tol)


def test_int8_logits_stay_near_fp32_and_greedy_codes_do_not_depend_on_the_batch():
    fp32 = tiny().eval()
    int8 = copy.deepcopy(fp32)
    quantize_int8(int8)
    ref, low = ar_logits(fp32), ar_logits(int8)
    assert 0 < (low - ref).norm() / ref.norm() < 0.1  # d 64, random weights: 0.067
    assert (low.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
    greedy = Sampling(top_k=1, max_frames=40)
    together = generate(int8, requests(), greedy)
    alone = [generate(int8, [r], greedy)[0] for r in requests()]
    assert all(torch.equal(a, b) for a, b in zip(together, alone))


def test_load_for_inference_merges_adapters_before_quantising(tmp_path):
    from test_adapters import _adapter_file

    base, adapter, merged = _adapter_file(tmp_path)
    with_adapter = load_for_inference(base, [adapter], device="cpu", precision="int8").model
    without = load_for_inference(base, device="cpu", precision="int8").model
    ref = ar_logits(merged.eval())
    near, far = (ar_logits(with_adapter) - ref).norm() / ref.norm(), (ar_logits(without) - ref).norm() / ref.norm()
    assert near < 0.1 and 3 * near < far


def test_a_bad_precision_is_refused_in_one_line(capsys):
    from valle.cli import run_main
    from valle.commands.infer import main

    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(["--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4", "--device", "cpu",
                               "--precision", "int4", "--text", "Hello.", "--codec-weights", "random"]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == "error: --precision int4: use one of fp32, bf16, fp16, int8\n"
    with pytest.raises(UserError, match="int8 runs on the CPU"):
        load_for_inference(TINY / "tiny.pt", device="cuda", precision="int8", nhead=4)
