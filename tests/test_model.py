"""VALLE: the released layout (keys, shapes, ties), the tiny reference checkpoint, the training forward."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from valle.config import ModelConfig
from valle.models import VALLE
from valle.models.valle import Sampling, ar_attention_mask, sample

DATA = Path(__file__).parent / "data"
TINY = ModelConfig(d_model=64, nhead=4, num_layers=2)


def released_layout() -> tuple[dict[str, list[int]], dict[str, str]]:
    """vallex_state_dict.txt -> ({key: shape} in file order, {summary name: value})."""
    shapes, facts = {}, {}
    for line in (DATA / "vallex_state_dict.txt").read_text().splitlines():
        m = re.fullmatch(r"(\S+) \[([\d, ]+)\]", line.strip())
        if m:
            shapes[m.group(1)] = [int(x) for x in m.group(2).split(",")]
        elif line.strip():
            name, _, value = line.partition(" ")
            facts[name] = value
    return shapes, facts


def test_full_size_model_has_exactly_the_released_keys_and_shapes():
    shapes, facts = released_layout()
    with torch.device("meta"):
        model = VALLE(ModelConfig())
    sd = model.state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == shapes
    assert list(sd) == list(shapes)  # same order as the released file, so an export reads the same
    assert len(sd) == int(facts["NUM_KEYS"])
    assert sum(v.numel() for v in sd.values()) == int(facts["SUM_NUMEL_STATE_DICT"])
    assert sum(p.numel() for p in model.parameters()) == int(facts["NUM_PARAMS_UNIQUE"])
    assert facts["BUFFERS"] == "[]" and not list(model.buffers())
    ar, nar = facts["AR"].split()[0], facts["AR"].split()[2]
    assert sum(p.numel() for _, p in model.half_named_parameters("ar")) == int(ar)
    # the two NAR position alphas are in the file but are not trained (as in the reference)
    assert sum(p.numel() for _, p in model.half_named_parameters("nar")) == int(nar) - 2


def test_shared_embeddings_are_one_tensor_under_both_keys():
    _, facts = released_layout()
    pairs = re.findall(r"\['([\w.]+)', '([\w.]+)'\]", facts["SHARED"])
    assert len(pairs) == 6
    model = VALLE(TINY)
    for emb, head in pairs:
        assert model.get_parameter(emb) is model.get_parameter(head)
        sd = model.state_dict()
        assert sd[emb].data_ptr() == sd[head].data_ptr()  # state_dict() yields both keys, one storage
    untied = VALLE(ModelConfig(d_model=64, nhead=4, num_layers=2, share_embedding=False))
    assert untied.state_dict().keys() == model.state_dict().keys()
    assert all(untied.get_parameter(e) is not untied.get_parameter(h) for e, h in pairs)


def test_tiny_reference_checkpoint_loads_strictly_and_stays_tied():
    state = torch.load(DATA / "vallex_tiny" / "tiny.pt", map_location="cpu", weights_only=True)["model"]
    model = VALLE(TINY)
    model.load_state_dict(state, strict=True)
    assert model.nar_predict_layers[0].weight is model.nar_audio_embeddings[2].word_embeddings.weight
    assert torch.equal(model.nar_predict_layers[3].weight, state["nar_audio_embeddings.5.word_embeddings.weight"])
    assert model.ar_text_position.alpha.item() == state["ar_text_position.alpha"].item()


def test_prenet_is_built_only_when_asked():
    plain = VALLE(TINY).state_dict()
    assert not any("prenet" in k for k in plain)
    with_prenet = VALLE(ModelConfig(d_model=64, nhead=4, num_layers=2, add_prenet=True)).state_dict()
    extra = {k.split(".")[0] for k in set(with_prenet) - set(plain)}
    assert extra == {"ar_text_prenet", "ar_audio_prenet", "nar_text_prenet", "nar_audio_prenet"}
    assert "ar_text_prenet.1.weight" in with_prenet and "ar_audio_prenet.6.weight" in with_prenet
    model = tiny_model(add_prenet=True)
    assert all(torch.isfinite(model(make_batch(), half)["loss"]) for half in ("ar", "nar"))
    codes = model.eval().generate([torch.arange(20, 25)], [torch.zeros(5, dtype=torch.long)],
                                  [torch.zeros(0, 8, dtype=torch.long)], [0], Sampling(top_k=1, max_frames=6))
    assert codes[0].shape == (6, 8)


def test_ar_mask_text_sees_text_both_ways_audio_sees_text_and_its_past():
    m = ar_attention_mask(2, 3, torch.device("cpu"))
    expected = torch.tensor([
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(m, expected)


def test_sampling_filters():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, -1.0]]).repeat(2000, 1)
    assert sample(logits, Sampling(top_k=1)).eq(1).all()
    g = torch.Generator().manual_seed(0)
    assert set(sample(logits, Sampling(top_k=2), g).tolist()) == {1, 2}
    # probabilities 0.64 0.24 0.09 ...: top_p 0.7 keeps the first token past 0.7, i.e. ids 1 and 2
    assert set(sample(logits, Sampling(top_p=0.7), g).tolist()) == {1, 2}
    assert set(sample(logits, Sampling(top_p=0.5), g).tolist()) == {1}
    cold = sample(logits, Sampling(temperature=0.05), g)
    assert cold.eq(1).float().mean() > 0.99
    assert len(set(sample(logits, Sampling(), g).tolist())) == 5


# ---------------------------------------------------------------------------------------------- training


def make_batch(seed: int = 0, pad_text: int = 0, pad_frames: int = 0, lengths=((5, 40), (8, 30), (3, 24))) -> dict:
    """Random batch; extra padding only adds pad positions (the content is the same for the same seed)."""
    g = torch.Generator().manual_seed(seed)
    B, L, T = len(lengths), max(n for n, _ in lengths) + pad_text, max(t for _, t in lengths) + pad_frames
    text = torch.full((B, L), 3, dtype=torch.long)  # 3 = the vallex pad id
    langs = torch.zeros(B, L, dtype=torch.long)
    codes = torch.zeros(B, T, 8, dtype=torch.long)
    for b, (n, t) in enumerate(lengths):
        text[b, :n] = torch.randint(5, 70, (n,), generator=g)
        langs[b, :n] = b % 3
        codes[b, :t] = torch.randint(0, 1024, (t, 8), generator=g)
        codes[b, t:] = 777  # padding content must not matter
    return {"text_tokens": text, "text_lens": torch.tensor([n for n, _ in lengths]), "text_langs": langs,
            "codes": codes, "code_lens": torch.tensor([t for _, t in lengths])}


def tiny_model(**kw) -> VALLE:
    torch.manual_seed(0)
    return VALLE(ModelConfig(d_model=32, nhead=2, num_layers=2, **kw))


@pytest.mark.parametrize("prefix_mode", [0, 1, 2])
@pytest.mark.parametrize("half", ["ar", "nar"])
def test_loss_ignores_padding(single_thread, half, prefix_mode):
    model = tiny_model(prefix_mode=prefix_mode).eval()  # eval: no dropout, so both runs compute the same
    torch.manual_seed(1)
    a = model(make_batch(), half)
    torch.manual_seed(1)
    b = model(make_batch(pad_text=4, pad_frames=9), half)
    assert torch.isfinite(a["loss"]) and 0.0 <= a["top10_acc"].item() <= 1.0
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-5, atol=1e-5)
    assert a["top10_acc"].item() == pytest.approx(b["top10_acc"].item())
    assert a["num_frames"] == b["num_frames"]
    if half == "ar":
        assert a["num_frames"] == 40 + 30 + 24 + 3  # every frame and one EOS per utterance


def test_nar_codebook_and_prefix_come_from_torch_rng(single_thread):
    model = tiny_model().train()
    torch.manual_seed(7)
    a = model(make_batch(), "nar")
    torch.manual_seed(7)
    b = model(make_batch(), "nar")
    assert a["loss"].item() == b["loss"].item() and a["num_frames"] == b["num_frames"]
    frames = {model(make_batch(), "nar")["num_frames"] for _ in range(12)}
    assert len(frames) > 1  # the prefix length varies (prefix mode 1)
    assert all((94 - f) % 3 == 0 and 0 <= (94 - f) // 3 < 12 for f in frames)  # only frames after the prefix


def grads_after(model: VALLE, half: str, **kw) -> set[str]:
    model.zero_grad(set_to_none=True)
    model(make_batch(), half, **kw)["loss"].backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_gradients_reach_exactly_the_half_being_trained(single_thread):
    model = tiny_model().train()
    ar = {n for n, _ in model.half_named_parameters("ar")}
    nar = {n for n, _ in model.half_named_parameters("nar")}
    assert not ar & nar and ar | nar == {n for n, p in model.named_parameters() if p.requires_grad}
    assert grads_after(model, "ar") == ar
    seen: set[str] = set()
    for codebook in range(1, 8):
        got = grads_after(model, "nar", codebook=codebook)
        assert got <= nar
        assert f"nar_stage_embeddings.{codebook - 1}.word_embeddings.weight" in got
        seen |= got
    assert seen == nar  # over the 7 codebooks every NAR parameter learns


def test_each_half_trains_with_the_other_half_elsewhere(single_thread):
    """The trainer keeps the untrained half in host memory (VALLE.place): a half's loss and gradients must never
    touch the other half. Here the other half is on the meta device, where any use of it would fail."""
    for half, other in (("ar", "nar"), ("nar", "ar")):
        model = tiny_model().train().place("meta", (other,))  # the other half "elsewhere", this one on the CPU
        assert {p.device.type for n, p in model.named_parameters() if n.startswith(half + "_")} == {"cpu"}
        assert {p.device.type for n, p in model.named_parameters() if n.startswith(other + "_")} == {"meta"}
        kw = {"codebook": 3} if half == "nar" else {}
        assert grads_after(model, half, **kw) and grads_after(model, half, **kw) <= {n for n, _ in
                                                                                 model.half_named_parameters(half)}
    model = tiny_model().place("meta", ("nar",))
    assert {p.device.type for p in model.place("meta").parameters()} == {"meta"}  # both halves together


def test_training_step_lowers_the_loss(single_thread):
    model = tiny_model(dropout=0.0).train()
    batch = make_batch()
    for half in ("ar", "nar"):
        opt = torch.optim.Adam([p for _, p in model.half_named_parameters(half)], lr=3e-3)
        torch.manual_seed(0)
        kw = {"codebook": 2} if half == "nar" else {}
        first = model(batch, half, **kw)["loss"].item()
        for _ in range(15):
            opt.zero_grad()
            out = model(batch, half, **kw)
            out["loss"].backward()
            opt.step()
        assert out["loss"].item() < first


@pytest.mark.parametrize("prefix_range,lowest", [("released", 0), ("lifeiteng", 6)])
def test_nar_prefix_length_range(single_thread, prefix_range, lowest):
    # The batch's shortest utterance has 24 frames: low = 6, so the prompt prefix is drawn from [0, 12) as
    # released, or from [6, 12) as lifeiteng. Each utterance then predicts its frames after the prefix.
    model = tiny_model(prefix_range=prefix_range).eval()
    prefixes = []
    for seed in range(40):
        torch.manual_seed(seed)
        prefixes.append((40 + 30 + 24 - model(make_batch(), "nar")["num_frames"]) // 3)
    assert min(prefixes) == lowest and max(prefixes) == 11 and len(set(prefixes)) >= 6


def test_transformer_layer_is_torch_pre_norm_encoder_layer(single_thread):
    # Same parameter names and shapes as torch.nn.TransformerEncoderLayer(norm_first=True, relu, 4x width), and
    # the same function: a released checkpoint's layers are exactly that layer.
    from valle.models.layers import TransformerLayer

    torch.manual_seed(0)
    ours = TransformerLayer(32, 4, dropout=0.0, adaptive=False).eval()
    for p in ours.parameters():  # non-trivial norms and biases too
        torch.nn.init.normal_(p, std=0.3)
    reference = torch.nn.TransformerEncoderLayer(32, 4, dim_feedforward=128, dropout=0.0, batch_first=True,
                                                 norm_first=True).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 7, 32)  # (B, T, D)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()  # (T, S) True = may attend
    padded = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])  # (B, S) the second has 5 frames
    with torch.no_grad():
        got = ours(x, None, causal[None, None] & ~padded[:, None, None, :], None, 0)  # (B, T, D)
        want = reference(x, src_mask=~causal, src_key_padding_mask=padded)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1, :5], want[1, :5], rtol=1e-5, atol=1e-5)
