"""Generation: the reference's greedy codes for the tiny checkpoint, batching, KV cache, stop rules, prompts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from valle.config import LANGUAGE_IDS, ModelConfig
from valle.errors import UserError
from valle.inference import Prompt, Request, Synthesizer, check_prompt, generate, load_prompt, save_prompt
from valle.models import VALLE
from valle.models.valle import Sampling, ar_attention_mask

TINY_DIR = Path(__file__).parent / "data" / "vallex_tiny"
CASES = [json.loads(line) for line in (TINY_DIR / "cases.jsonl").read_text().splitlines()]
GREEDY = Sampling(top_k=1)
# The tiny model has random weights and logits in the hundreds: where its two best logits are closer than
# this (relative), float rounding of the machine that made cases.jsonl decides, not the algorithm.
NEAR_TIE = 1e-4


def tiny_model(**overrides) -> VALLE:
    model = VALLE(ModelConfig(d_model=64, nhead=4, num_layers=2, **overrides))
    state = torch.load(TINY_DIR / "tiny.pt", map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> VALLE:
    return tiny_model()


@pytest.fixture(scope="module")
def tokenizer():
    from valle.text import get_tokenizer

    return get_tokenizer("vallex")


@pytest.fixture(scope="module")
def prompt() -> Prompt:
    return load_prompt(TINY_DIR / "prompt.npz")


def request(tokenizer, text: str, language: str, prompt: Prompt | None = None) -> Request:
    tok = tokenizer.encode(text, language)
    return Request(tok.ids, tok.languages, prompt)


def rel_gap(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) -> (...): gap between the two best logits relative to the best."""
    top = logits.topk(2, dim=-1).values
    return (top[..., 0] - top[..., 1]) / top[..., 0].abs().clamp(min=1.0)


def generate_with_logits(model: VALLE, req: Request):
    ar, nar = [], []
    hooks = [model.ar_predict_layer.register_forward_hook(lambda m, i, o: ar.append(o[0]))]
    hooks += [layer.register_forward_hook(lambda m, i, o: nar.append(o[0])) for layer in model.nar_predict_layers]
    try:
        codes = generate(model, [req], GREEDY)[0]
    finally:
        for h in hooks:
            h.remove()
    return codes, ar, nar


@pytest.mark.parametrize("case", CASES, ids=[f"{c['language']}-{'prompt' if c['prompt'] else 'none'}-{i}"
                                             for i, c in enumerate(CASES)])
def test_reference_cases_greedy(single_thread, model, tokenizer, prompt, case):
    """Same codes as the reference, frame for frame; where they part, it is at a near-tie of the reference."""
    req = request(tokenizer, case["text"], case["language"], prompt if case["prompt"] else None)
    codes, ar_logits, nar_logits = generate_with_logits(model, req)
    ref = torch.tensor(case["codes"])
    assert codes.dtype == torch.long and codes.shape[1] == 8
    n_text = len(req.text_ids) + (len(prompt.text_ids) if case["prompt"] else 0)
    assert len(ref) == 16 * n_text  # the reference stopped by the 16-frames-per-text-token rule
    if torch.equal(codes, ref):
        return
    n = min(len(codes), len(ref))
    parted = (codes[:n, 0] != ref[:n, 0]).nonzero().flatten().tolist() or ([n] if len(codes) != len(ref) else [])
    if parted:  # the AR took another code at frame k
        k = parted[0]
        assert rel_gap(ar_logits[k]).item() < NEAR_TIE, f"AR differs at frame {k} without a near-tie"
        return
    cb = next(j for j in range(1, 8) if not torch.equal(codes[:, j], ref[:, j]))  # first NAR codebook that differs
    frames = (codes[:, cb] != ref[:, cb]).nonzero().flatten()
    assert (rel_gap(nar_logits[cb - 1][frames]) < NEAR_TIE).all(), f"codebook {cb} differs without a near-tie"


def test_reference_cases_teacher_forced(single_thread, model, tokenizer, prompt):
    """Fed the reference codes, the model picks the reference's code at every frame of every codebook,
    except at most one near-tie per case."""
    for case in CASES:
        p = prompt if case["prompt"] else None
        req = request(tokenizer, case["text"], case["language"], p)
        ref = torch.tensor(case["codes"])
        pc = p.codes if p else torch.zeros(0, 8, dtype=torch.long)
        ids = torch.tensor([(p.text_ids if p else []) + req.text_ids])
        prompt_langs = [LANGUAGE_IDS[p.language]] * len(p.text_ids) if p else []
        langs = torch.tensor([prompt_langs + [LANGUAGE_IDS[x] for x in req.languages]])
        misses = 0
        with torch.no_grad():
            # AR: one causal pass over [text | BOS, prompt, reference frames]
            x = model.embed_text("ar", ids, langs)
            audio = torch.cat([torch.tensor([model.bos]), pc[:, 0], ref[:, 0]])[None]
            h = model.ar_decoder(torch.cat([x, model.embed_ar_audio(audio)], 1),
                                 mask=ar_attention_mask(x.shape[1], audio.shape[1], x.device))
            logits = model.ar_predict_layer(h[0, x.shape[1] + len(pc) : -1])  # predicts each reference frame
            wrong = logits.argmax(-1) != ref[:, 0]
            assert (rel_gap(logits[wrong]) < NEAR_TIE).all()
            misses += int(wrong.sum())
            # NAR: codebook j sees the reference codebooks < j
            x = model.embed_text("nar", ids, langs)
            codes = torch.cat([pc, ref])[None]
            emb = model.nar_audio_embeddings
            y = emb[0](codes[..., 0])
            for j in range(1, 8):
                y[:, : len(pc)] += emb[j](codes[:, : len(pc), j])
            for j in range(1, 8):
                h = model.nar_decoder(torch.cat([x, model.nar_audio_position(y)], 1),
                                      cond=model.nar_stage_embeddings[j - 1].weight)
                logits = model.nar_predict_layers[j - 1](h[0, x.shape[1] + len(pc) :])
                wrong = logits.argmax(-1) != ref[:, j]
                assert (rel_gap(logits[wrong]) < NEAR_TIE).all()
                misses += int(wrong.sum())
                y[:, len(pc) :] += emb[j](codes[:, len(pc) :, j])
        assert misses <= 1, f"{case['text']}: {misses} near-ties"


def test_batched_equals_one_by_one(single_thread, model, tokenizer, prompt):
    other = Prompt(prompt.codes[:37], prompt.text_ids[:9], "zh")  # another prompt length and language
    reqs = [
        request(tokenizer, "Hi.", "en"),
        request(tokenizer, "你好，世界。", "zh", prompt),
        request(tokenizer, "[EN]Hello[EN][ZH]你好[ZH]", "mix", other),
        request(tokenizer, "The quick brown fox jumps over the lazy dog.", "en"),
    ]
    together = generate(model, reqs, Sampling(top_k=1, max_frames=40))
    alone = [generate(model, [r], Sampling(top_k=1, max_frames=40))[0] for r in reqs]
    for a, b in zip(together, alone):
        assert a.shape == (40, 8) and torch.equal(a, b)


def test_default_stop_is_16_frames_per_text_token_per_item(single_thread, model):
    reqs = [Request([20 + i for i in range(n)], ["en"] * n) for n in (2, 5, 3)]
    codes = generate(model, reqs, GREEDY)
    assert [len(c) for c in codes] == [32, 80, 48]
    assert torch.equal(codes[1], generate(model, [reqs[1]], GREEDY)[0])


@pytest.fixture(scope="module")
def eos_model(model) -> tuple[VALLE, list[Request]]:
    """The tiny model with EOS made as likely as its favourite code: items now stop at EOS, at different times."""
    reqs = [Request([20 + i for i in range(n)], ["en"] * n) for n in (4, 7, 11)]
    first = generate(model, reqs[:1], GREEDY)[0][:, 0]
    favourite = int(first[8:].mode().values)  # a code it likes, but not at the very start
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.ar_predict_layer.weight[m.eos] = m.ar_predict_layer.weight[favourite] * 1.02
    return m, reqs


def test_stops_at_eos_and_batches_items_that_stop_at_different_times(single_thread, eos_model):
    m, reqs = eos_model
    alone = [generate(m, [r], GREEDY)[0] for r in reqs]
    lengths = [len(c) for c in alone]
    assert all(n < 16 * len(r.text_ids) for n, r in zip(lengths, reqs)), lengths  # EOS, not the length rule
    assert len(set(lengths)) > 1
    together = generate(m, reqs, GREEDY)
    assert all(torch.equal(a, b) for a, b in zip(together, alone))
    held = generate(m, reqs, Sampling(top_k=1, min_frames=max(lengths) + 3))
    assert all(len(c) >= max(lengths) + 3 for c in held)  # min_frames holds EOS back


def test_kv_cache_gives_the_same_codes_as_recomputing(single_thread, model, tokenizer, prompt):
    reqs = [request(tokenizer, "The quick brown fox.", "en", prompt), request(tokenizer, "Hi.", "en")]
    cached = generate(model, reqs, Sampling(top_k=1, max_frames=25))
    recomputed = generate(model, reqs, Sampling(top_k=1, max_frames=25), use_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(cached, recomputed))


def test_sampling_is_seeded(single_thread, model, tokenizer):
    req = [request(tokenizer, "Hello world.", "en")]
    s = Sampling(top_k=50, temperature=1.5, seed=3, max_frames=30)
    a = generate(model, req, s)[0]
    b = generate(model, req, s)[0]
    c = generate(model, req, s.for_batch(1))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_prefix_mode_2_leaves_the_prompt_text_out_of_the_nar(single_thread, prompt):
    text = torch.arange(20, 30)
    langs = torch.zeros(10, dtype=torch.long)
    other = torch.cat([torch.arange(40, 45), text[5:]])  # same target text, another prompt text
    ar = [torch.arange(100, 130)]
    for mode, same in ((1, False), (2, True), (0, False)):
        m = tiny_model(prefix_mode=mode)
        a = m.generate_nar([text], [langs], [prompt.codes[:20]], [5], ar)[0]
        b = m.generate_nar([other], [langs], [prompt.codes[:20]], [5], ar)[0]
        assert a.shape == (30, 8) and torch.equal(a[:, 0], ar[0])
        assert torch.equal(a, b) == same, mode


def test_synthesizer_returns_codes_and_wave(single_thread, model, tokenizer, prompt, random_codec):
    synth = Synthesizer(model, tokenizer, random_codec)
    codes, wave = synth.synthesize("Hello.", "en", prompt=prompt, sampling=Sampling(top_k=1, max_frames=20))
    assert codes.shape == (20, 8) and wave.shape == (20 * 320,) and torch.isfinite(wave).all()
    both = synth.synthesize_batch([("Hello.", "en"), ("你好。", "zh")], prompt=prompt,
                                  sampling=Sampling(top_k=1, max_frames=20))
    assert torch.equal(both[0][0], codes)


def test_prompt_preset_round_trip_and_errors(tmp_path, model, prompt):
    path = save_prompt(tmp_path / "v.npz", prompt)
    again = load_prompt(path)
    assert torch.equal(again.codes, prompt.codes) and again.text_ids == prompt.text_ids and again.language == "en"
    with np.load(path) as npz:
        assert npz["audio_tokens"].shape == (1, 60, 8) and npz["text_tokens"].shape == (1, 18)
        assert int(npz["lang_code"]) == 2
    np.savez(tmp_path / "bad.npz", audio_tokens=np.zeros((1, 5, 8), dtype=np.int64))
    with pytest.raises(UserError, match=r"missing arrays \['lang_code', 'text_tokens'\]"):
        load_prompt(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", audio_tokens=np.zeros((5, 8)), text_tokens=np.zeros((1, 3)), lang_code=2)
    with pytest.raises(UserError, match=r"expected \[1,T,8\]"):
        load_prompt(tmp_path / "shape.npz")
    with pytest.raises(UserError, match="not found"):
        load_prompt(tmp_path / "nothing.npz")
    ja = save_prompt(tmp_path / "ja.npz", Prompt(prompt.codes, prompt.text_ids, "ja"))
    with np.load(ja) as npz:
        assert int(npz["lang_code"]) == 1  # the released presets' code for Japanese (zh 0, ja 1, en 2)
    assert load_prompt(ja).language == "ja"
    long = Prompt(torch.zeros(16 * 75, 8, dtype=torch.long), [20, 21], "en")
    with pytest.raises(UserError, match="longer than the 15 s"):
        check_prompt(long, model)
    with pytest.raises(UserError, match="outside 0..1023"):
        check_prompt(Prompt(torch.full((10, 8), 1024), [20], "en"), model)


def test_models_with_text_bos_eos_read_prompt_and_text_as_one_framed_utterance(single_thread, prompt):
    torch.manual_seed(0)
    model = VALLE(ModelConfig(d_model=32, nhead=2, num_layers=1, text_bos_id=1, text_eos_id=2)).eval()
    seen = []
    hook = model.ar_text_embedding.register_forward_hook(lambda m, i, o: seen.append(i[0][0].tolist()))
    try:
        generate(model, [Request([30, 31], ["en", "en"], prompt)], Sampling(top_k=1, max_frames=3))
    finally:
        hook.remove()
    assert seen[0] == [1, *prompt.text_ids, 30, 31, 2]  # one BOS before the prompt text, one EOS after the target
