"""The ONNX export and the ONNX Runtime engine: the torch engine's greedy codes on the tiny golden cases, its sampling,
int8 close to fp32, the host's KV cache, export -> load -> speak through the CLIs, and the refusals (engine name,
missing package, a folder exported from another model or in another format)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from valle.errors import UserError  # noqa: E402
from valle.inference import Request, generate, load_for_inference, load_prompt, model_inputs  # noqa: E402
from valle.models.checkpoint import load_model  # noqa: E402
from valle.models.valle import Sampling  # noqa: E402
from valle.onnx_engine.export import export, model_digest  # noqa: E402
from valle.onnx_engine.runtime import HostCache, OnnxVALLE  # noqa: E402
from valle.text import get_tokenizer  # noqa: E402

TINY = Path(__file__).resolve().parent / "data" / "vallex_tiny"
CASES = [json.loads(line) for line in (TINY / "cases.jsonl").read_text().splitlines()]
GREEDY = Sampling(top_k=1)
NEAR_TIE = 1e-5  # where the engines part, torch's two best logits are closer than this (relative)


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


@pytest.fixture(scope="module")
def model():
    return load_model(TINY / "tiny.pt", nhead=4)[0]


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory, model) -> Path:
    torch.set_num_threads(1)  # before the function fixtures' single_thread
    return export(model, tmp_path_factory.mktemp("onnx") / "fp32").parent


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, model) -> Path:
    torch.set_num_threads(1)
    return export(model, tmp_path_factory.mktemp("onnx") / "int8", precision="int8").parent


@pytest.fixture(scope="module")
def requests_() -> list[Request]:
    tok, prompt = get_tokenizer("vallex"), load_prompt(TINY / "prompt.npz")
    return [Request(list(t.ids), list(t.languages), prompt if c["prompt"] else None)
            for c in CASES for t in [tok.encode(c["text"], c["language"])]]


def rel_gap(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) -> (...): the gap between the two best logits relative to the best."""
    top = logits.topk(2, dim=-1).values
    return (top[..., 0] - top[..., 1]) / top[..., 0].abs().clamp(min=1.0)


def torch_codes_and_logits(model, req: Request):
    """Greedy codes of the torch engine for one request, with its AR logits per frame and NAR logits per
    codebook."""
    ar, nar = [], []
    hooks = [model.ar_predict_layer.register_forward_hook(lambda m, i, o: ar.append(o[0].reshape(-1)))]
    hooks += [layer.register_forward_hook(lambda m, i, o: nar.append(o[0])) for layer in model.nar_predict_layers]
    try:
        codes = generate(model, [req], GREEDY)[0]
    finally:
        for h in hooks:
            h.remove()
    return codes, ar, nar


def test_fp32_greedy_codes_are_torch_fp32_on_the_golden_cases(model, fp32_dir, requests_):
    """All cases in one batch through ONNX Runtime (greedy batches give the codes of one by one): each case's codes
    are the torch engine's; where they part, torch's two best logits were a near-tie (the first token that
    differs: what follows it is generated from another history)."""
    onnx_codes = generate(OnnxVALLE.load(fp32_dir), requests_, GREEDY)
    same = 0
    for req, got, want in zip(requests_, onnx_codes, generate(model, requests_, GREEDY)):
        assert got.dtype == torch.long and got.shape[1] == 8
        if torch.equal(got, want):
            same += 1
            continue
        _, ar, nar = torch_codes_and_logits(model, req)
        assert got.shape == want.shape  # the length rule, as no EOS came
        frames = (got[:, 0] != want[:, 0]).nonzero().flatten()
        if len(frames):  # the AR took another code first
            assert rel_gap(ar[int(frames[0])]).item() < NEAR_TIE
            continue
        cb = next(j for j in range(1, 8) if not torch.equal(got[:, j], want[:, j]))
        frames = (got[:, cb] != want[:, cb]).nonzero().flatten()
        assert (rel_gap(nar[cb - 1][frames]) < NEAR_TIE).all(), f"codebook {cb} differs without a near-tie"
    assert same >= len(CASES) - 1  # 5 of the 6 cases are identical frame for frame


def test_sampling_is_the_torch_engines(model, fp32_dir, requests_):
    """top-k, top-p and temperature draw from the same logits with the same generator: the same codes."""
    engine = OnnxVALLE.load(fp32_dir)
    s = Sampling(top_k=50, top_p=0.9, temperature=1.3, seed=5, max_frames=40)
    want = generate(model, requests_[:3], s)
    assert all(torch.equal(a, b) for a, b in zip(generate(engine, requests_[:3], s), want))
    assert not torch.equal(generate(engine, requests_[:1], s.for_batch(1))[0], want[0])  # the seed matters


def test_int8_stays_close_to_fp32(model, fp32_dir, int8_dir, requests_):
    """int8 weights on the tiny random model (d 64, logits in the hundreds: harder on 8 bits than the full size,
    whose logits move by about 1.5 %, docs/benchmarks.md): the AR's logits of each case's first frame within 10 % of
    fp32's (relative L2) in the median and 40 % at worst, and the same best code in most cases."""
    assert json.loads((int8_dir / "manifest.json").read_text())["precision"] == "int8"
    engines = [OnnxVALLE.load(d) for d in (fp32_dir, int8_dir)]
    text, langs, prompts, _ = zip(*(model_inputs(model, r) for r in requests_))
    want, got = (e.prefill(list(text), list(langs), list(prompts))[0] for e in engines)  # (B, V+1) each
    error = (got - want).norm(dim=1) / want.norm(dim=1)  # (B,)
    print("int8: relative error of the first logits", error.tolist(), "same best", (got.argmax(1) == want.argmax(1)))
    assert error.median() < 0.1 and error.max() < 0.4
    assert (got.argmax(1) == want.argmax(1)).sum() >= len(CASES) - 1


def test_8_bit_values_cost_the_steps_little(model, fp32_dir, int8_dir, requests_, tmp_path):
    """The int8 export caches the AR's values in 8 bits (int8 inputs, a scale per column). What that alone costs:
    an export with fp32 weights and the 8-bit value cache, its steps fed fp32's greedy codes for 30 frames, keeps
    the logits within 3 % of fp32's (relative L2) in the median and 20 % at worst (the int8 weights move this tiny
    model's by 8 % and 80 %)."""
    int8 = OnnxVALLE.load(int8_dir)
    inputs = {i.name: i.type for i in int8.ar.get_inputs()}
    assert int8.int8_values and inputs["past.0.value"] == "tensor(int8)"
    assert inputs["past.0.value_scale"] == "tensor(float)" and "past.0.value_scale" not in [
        i.name for i in OnnxVALLE.load(fp32_dir).ar.get_inputs()]
    cached = OnnxVALLE.load(export(model, tmp_path, value_cache="int8").parent)
    assert cached.precision == "fp32" and cached.int8_values
    text, langs, prompts, _ = zip(*(model_inputs(model, r) for r in requests_))
    (want, want_step), (got, got_step) = (e.prefill(list(text), list(langs), list(prompts))
                                          for e in (OnnxVALLE.load(fp32_dir), cached))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)  # the prompt pass reads no cached value
    errors = []
    for _ in range(30):
        ids = want[:, :1024].argmax(-1)  # (B,)
        want, got = want_step(ids), got_step(ids)
        errors.append((got - want).norm(dim=1) / want.norm(dim=1))  # (B,)
    error = torch.stack(errors)
    print("8-bit values: relative error of the steps' logits, median", error.median().item(), "worst",
          error.max().item())
    assert error.median() < 0.03 and error.max() < 0.2


def test_8_bit_values_never_saturate_the_integer_product(tmp_path):
    """cached_values through ONNX Runtime at the extremes (every weight quantized to 255, every value to +-63, a
    thousand columns): the sum over the cache within its rounding of the exact one. Values of 8 bits (+-127) would
    saturate the CPU's 16-bit pairwise sums (vpmaddubsw) and lose most of the sum."""
    import onnxruntime as ort

    from valle.onnx_engine.graphs import cached_values, quantize_values

    class Values(torch.nn.Module):
        def forward(self, p, values, scales):
            return cached_values(p, values, scales)

    rng = np.random.default_rng(0)
    C = 1000
    v = torch.from_numpy(rng.choice([-1.0, 1.0], (1, 2, C, 16)).astype(np.float32))  # (B, H, C, Dh): max |v| each
    values, scales = quantize_values(v)
    assert values.abs().max() == 63 and values.dtype == torch.int8
    p = torch.full((1, 2, 1, C), 1 / C)  # (B, H, T, C): equal weights, all quantized to 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice
        torch.onnx.export(Values(), (p, values, scales), str(tmp_path / "values.onnx"),
                          input_names=["p", "values", "scales"], dynamo=False)
    session = ort.InferenceSession(str(tmp_path / "values.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"p": p.numpy(), "values": values.numpy(), "scales": scales.numpy()})
    want = (p @ v).numpy()  # (1, 2, 1, 16)
    np.testing.assert_allclose(got, want, atol=0.01 * np.abs(v.numpy()).max())


def test_the_prompt_pass_in_groups_of_rows_is_the_whole_batchs(model, fp32_dir, requests_, monkeypatch):
    """The 6 golden cases' prompt pass, 4 rows at a time (PROMPT_ROWS) and all at once: the same first logits, the
    same cache (every array, the valid columns, the length)."""
    from valle.onnx_engine import runtime

    engine = OnnxVALLE.load(fp32_dir)
    text, langs, prompts, _ = zip(*(model_inputs(model, r) for r in requests_))
    runs = []
    for rows in (4, 100):
        monkeypatch.setattr(runtime, "PROMPT_ROWS", rows)
        runs.append(engine._prefill(list(text), list(langs), list(prompts)))
    (logits, cache, position), (whole_logits, whole, whole_position) = runs
    torch.testing.assert_close(logits, whole_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(position, whole_position) and cache.length == whole.length
    np.testing.assert_array_equal(cache.valid, whole.valid)
    for a, b in zip(cache.arrays, whole.arrays, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_int8_holds_every_embedding_table_in_8_bits_per_row(model, int8_dir):
    """No float table is gathered from in the int8 files: each embedding is uint8 with a scale per row, and
    (q - 128) * scale is the model's table within half a step."""
    state, tables = model.state_dict(), set()
    for name in ("ar.onnx", "nar.onnx"):
        graph = onnx.load(int8_dir / name).graph
        weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        assert not [n for n in graph.node if n.op_type == "Gather" and weights.get(n.input[0], np.int64(0)).dtype
                    == np.float32]
        for node in (n for n in graph.node if n.op_type == "GatherBlockQuantized"):
            q, scale = weights[node.input[0]], weights[node.input[2]]  # (rows, D) uint8, (rows, 1)
            want = state[node.input[0].removeprefix("model.").removesuffix("_uint8")].numpy()
            assert q.dtype == np.uint8 and scale.shape == (len(want), 1)
            assert (np.abs((q.astype(np.float32) - 128) * scale - want) <= scale * 0.5001).all()
            tables.add(node.input[0])
    assert len(tables) == 3 + 2 + model.config.num_quantizers  # AR text, audio, language; NAR text, language, audio


def test_int8_leaves_only_the_nar_output_layers_in_float(model, int8_dir):
    """Every matrix product with weights is int8 but the NAR's 7 output layers (the products whose rounding moved
    the trained model's greedy codes most), which stay the model's own fp32 weights."""
    state = model.state_dict()
    for name in ("ar.onnx", "nar.onnx"):
        graph = onnx.load(int8_dir / name).graph
        weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        float_products = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
        assert sorted(n.name for n in float_products) == ([f"/nar_predict_layers.{i}/MatMul" for i in range(7)]
                                                          if name == "nar.onnx" else [])
        for n in float_products:
            layer = n.name.split("/")[1]
            np.testing.assert_array_equal(weights[n.input[1]], state[f"{layer}.weight"].numpy().T)


def test_a_step_that_grows_the_cache_holds_it_once(fp32_dir, model, requests_, monkeypatch):
    """The step whose new column needs more room pads the cache one array at a time: the memory it adds while it
    runs stays under half the cache (feeds of the graph still holding the old cache would add as much as it)."""
    caches, write = [], HostCache.write
    monkeypatch.setattr(HostCache, "GROW", 4)
    monkeypatch.setattr(HostCache, "write", lambda self, new, valid: (caches.append(self), write(self, new, valid)))
    engine = OnnxVALLE.load(fp32_dir)
    text, langs, prompt, _ = model_inputs(model, requests_[0])
    ids = torch.tensor([7])
    tracemalloc.start()  # numpy's arrays are traced from here: the cache's too
    try:
        _, step = engine.prefill([text], [langs], [prompt])
        for _ in range(HostCache.GROW):
            step(ids)
        room, before = caches[0].valid.shape[1], tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step(ids)
        added = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert caches[0].valid.shape[1] > room  # this step grew the cache
    assert added < 0.5 * sum(a.nbytes for a in caches[0].arrays)


def test_benchmarks_reuse_an_export_only_of_this_model_precision_and_format(model, fp32_dir, tmp_path):
    """holds_export (bench/onnx_speed.py, bench/serve_load.py): the folder of this model's fp32 export, not for int8,
    another format (a folder of the last format, which the engine refuses) or a missing folder."""
    from valle.onnx_engine.export import holds_export

    assert holds_export(fp32_dir, model, "fp32") and not holds_export(fp32_dir, model, "int8")
    old = tmp_path / "old"
    shutil.copytree(fp32_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps(manifest | {"format": 2}))
    assert not holds_export(old, model, "fp32") and not holds_export(tmp_path / "none", model, "fp32")


def test_an_export_cut_off_over_an_older_one_leaves_a_folder_that_is_refused(model, fp32_dir, tmp_path,
                                                                            monkeypatch):
    """Exporting int8 into a folder holding an fp32 export, stopped after the graphs are written: the folder has no
    manifest (the old one would describe files it no longer holds: the engine fed them the fp32 cache and failed
    with ONNX Runtime's traceback), so loading it is refused in one line; exporting again makes it whole."""
    from valle.onnx_engine import export as export_module

    folder = tmp_path / "re"
    shutil.copytree(fp32_dir, folder)

    def stopped(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "quantize_int8", stopped)
    with pytest.raises(KeyboardInterrupt):
        export(model, folder, precision="int8")
    with pytest.raises(UserError, match=r"manifest.json not found: --onnx takes a folder written by the ONNX export"):
        OnnxVALLE.load(folder)
    monkeypatch.undo()
    export(model, folder, precision="int8")
    assert OnnxVALLE.load(folder).int8_values


def test_the_ar_session_records_no_memory_pattern(fp32_dir):
    """The AR's shapes change at every step: its session records no memory pattern (one recorded for a prompt pass
    took a block of its own in the arena at the next prompt pass of the same shape: +60 MB of peak at full size,
    docs/benchmarks.md); the NAR's, one call per request, keeps them."""
    engine = OnnxVALLE.load(fp32_dir)
    assert not engine.ar.get_session_options().enable_mem_pattern
    assert engine.nar.get_session_options().enable_mem_pattern


def test_the_nar_gives_its_working_memory_back(fp32_dir, model, requests_, monkeypatch):
    """The NAR runs with arena shrinkage: its working memory (the arena's largest, 80 MB at full size) is given back
    after each call, not kept next to the next request's KV cache."""
    engine = OnnxVALLE.load(fp32_dir)
    options, run = [], engine.nar.run
    monkeypatch.setattr(engine.nar, "run", lambda out, feeds, opts=None: (options.append(opts),
                                                                          run(out, feeds, opts))[1])
    generate(engine, requests_[:1], GREEDY.for_batch(1))
    assert [o.get_run_config_entry("memory.enable_memory_arena_shrinkage") for o in options] == ["cpu:0"]


def test_precision_benchmark_engine_rows_are_the_trainers_loss(model, fp32_dir):
    """bench/precision_quality.py --onnx on the fp32 export: the engine's AR teacher-forced over the positions of
    VALLE's AR loss gives its loss and top-10 accuracy, its logits torch's; the NAR's greedy codes torch's."""
    from bench.precision_quality import measure_engine

    g = torch.Generator().manual_seed(0)
    text_lens, code_lens = torch.tensor([7, 5]), torch.tensor([6, 9])
    valid = torch.arange(9) < code_lens[:, None]  # (B, T)
    batch = {"text_tokens": torch.randint(5, 70, (2, 7), generator=g) * (torch.arange(7) < text_lens[:, None]),
             "text_lens": text_lens, "text_langs": torch.zeros(2, 7, dtype=torch.long), "code_lens": code_lens,
             "codes": torch.randint(0, 1024, (2, 9, 8), generator=g) * valid[..., None]}  # zero-padded as batches are
    with torch.inference_mode():
        want = model.eval()(batch, half="ar")
        row = measure_engine(model, OnnxVALLE.load(fp32_dir), [batch])
    assert row["ar"]["positions"] == 6 + 1 + 9 + 1  # every frame and one EOS per item
    assert row["ar"]["loss"] == pytest.approx(float(want["loss"]), abs=1e-4)
    assert row["ar"]["top10_acc"] == pytest.approx(float(want["top10_acc"]), abs=1e-5)
    assert row["ar"]["rel_error"] < 1e-5 and row["ar"]["top1_agreement"] == 1.0
    assert row["nar_codes"]["agreement"] == 1.0 and row["nar_codes"]["frames"] == 9 - 3 + 6 - 3


@pytest.mark.parametrize("int8_values", [False, True])
def test_host_cache_grows_without_losing_columns(int8_values):
    """Writes of 3 columns, then 70 of one (past the room of the first growth): every array of every layer (keys,
    values and, with int8 values, their scales) holds each column where it was written, in its own dtype; the
    unfilled room is zero and not valid."""
    cache = HostCache(layers=2, heads=3, head_dim=4, int8_values=int8_values, rows=2)
    rng = np.random.default_rng(0)
    kinds = [(np.float32, (4,)), (np.int8, (4,)), (np.float32, ())] if int8_values else [(np.float32, (4,))] * 2
    written, valid = [], []
    for t in [3] + [1] * 70:
        new = [(rng.standard_normal((2, 3, t, *tail)) * 50).astype(dtype) for _ in range(2) for dtype, tail in kinds]
        ok = rng.random((2, t)) < 0.8
        cache.write(new, ok)
        written, valid = written + [new], valid + [ok]
    ok = np.concatenate(valid, 1)
    assert cache.length == 73 and cache.valid.shape[1] >= 73 and len(cache.arrays) == 2 * len(kinds)
    for i, array in enumerate(cache.arrays):
        want = np.concatenate([new[i] for new in written], 2)  # (B, H, 73, ...)
        assert array.dtype == want.dtype
        np.testing.assert_array_equal(array[:, :, :73], want)
        assert not array[:, :, 73:].any()
    np.testing.assert_array_equal(cache.valid[:, :73], ok)
    assert not cache.valid[:, 73:].any()


def test_rows_of_any_length_step_as_alone_and_the_last_to_leave_frees_the_cache(model, fp32_dir, requests_):
    """The speech API's rows (OnnxRows): a long item and a short one join; after two steps the long one leaves (the
    short one moves into its row) and the short one's next logits are those of generating it alone; when it leaves
    too, the cache is empty again (later rows do not read the columns of long ones)."""
    engine = OnnxVALLE.load(fp32_dir)
    long, short = (model_inputs(model, r) for r in (requests_[0], requests_[1]))
    assert len(long[0]) + len(long[2]) > len(short[0]) + len(short[2])
    rows = engine.ar_rows()
    joined = [rows.join(*item[:3], frames=10) for item in (long, short)]  # (1, V+1) each
    alone, step = engine.prefill([short[0]], [short[1]], [short[2]])
    torch.testing.assert_close(joined[1], alone)
    for _ in range(2):
        ids = torch.cat(joined).argmax(-1)  # (2,)
        joined = list(rows.step(ids).split(1))
        alone = step(ids[1:])
        torch.testing.assert_close(joined[1], alone, rtol=1e-5, atol=1e-5)
    rows.leave(0)
    ids = joined[1].argmax(-1)
    torch.testing.assert_close(rows.step(ids), step(ids), rtol=1e-5, atol=1e-5)
    rows.leave(0)
    assert len(rows) == 0 and rows.cache.valid.shape == (0, 1)  # room for one column


def test_refusals_in_one_line(model, fp32_dir, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="^--engine tensorrt: use one of torch, onnxruntime$"):
        load_for_inference(TINY / "tiny.pt", device="cpu", nhead=4, engine="tensorrt")
    with pytest.raises(UserError, match="needs --onnx DIR"):
        load_for_inference(TINY / "tiny.pt", device="cpu", nhead=4, engine="onnxruntime")
    with pytest.raises(UserError, match="manifest.json not found"):
        load_for_inference(TINY / "tiny.pt", device="cpu", nhead=4, engine="onnxruntime", onnx=tmp_path)
    # another model: the tiny checkpoint with one weight changed
    other = tmp_path / "other.pt"
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["ar_predict_layer.weight"][0, 0] += 1.0
    torch.save({"model": state}, other)
    with pytest.raises(UserError, match=r"was exported from another model \(digest [0-9a-f]{12}, this one"):
        load_for_inference(other, device="cpu", nhead=4, engine="onnxruntime", onnx=fp32_dir)
    old = tmp_path / "format1"  # the same model exported before the AR read its cache in place
    shutil.copytree(fp32_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "format"}))
    with pytest.raises(UserError, match=r"^\S+format1 holds ONNX files of format 1, this engine runs format 3: export"):
        load_for_inference(TINY / "tiny.pt", device="cpu", nhead=4, engine="onnxruntime", onnx=old)
    speaking = load_for_inference(TINY / "tiny.pt", device="cpu", nhead=4, engine="onnxruntime", onnx=fp32_dir)
    assert isinstance(speaking.model, OnnxVALLE) and speaking.model.manifest["digest"] == model_digest(model)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"^--engine onnxruntime needs the package onnxruntime: pip install -e "):
        load_for_inference(TINY / "tiny.pt", device="cpu", nhead=4, engine="onnxruntime", onnx=fp32_dir)


def test_infer_cli_refuses_bad_engine_options(fp32_dir, tmp_path, capsys):
    from valle.commands import infer

    base = ["--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4", "--text", "Hi.", "--output", str(tmp_path / "o.wav")]
    with pytest.raises(SystemExit) as e:
        infer.main([*base, "--engine", "tensorrt"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "argument --engine: invalid choice: 'tensorrt'" in err
    with pytest.raises(UserError, match="--precision int8 is for the torch engine"):
        infer.main([*base, "--engine", "onnxruntime", "--onnx", str(fp32_dir), "--precision", "int8"])
    with pytest.raises(UserError, match="--compile is for the torch engine"):
        infer.main([*base, "--engine", "onnxruntime", "--onnx", str(fp32_dir), "--compile", "inductor"])
    with pytest.raises(UserError, match="--onnx is for --engine onnxruntime"):
        infer.main([*base, "--onnx", str(fp32_dir)])


def evaluate_args(cuts: Path, out: Path, *checkpoints: Path) -> list[str]:
    """valle evaluate on `cuts` with the tiny checkpoints, greedy, the preset prompt, no scoring models."""
    return ["--checkpoint", *map(str, checkpoints), "--nhead", "4", "--cuts", str(cuts), "--output-dir", str(out),
            "--prompt", "preset", str(TINY / "prompt.npz"), "--top-k", "1", "--max-frames", "40",
            "--codec-weights", "random", "--speaker-model", "none", "--asr-model", "none", "--device", "cpu"]


def test_evaluation_through_the_engine(fp32_dir, tmp_path, capsys):
    """valle evaluate --engine onnxruntime: the checkpoint speaks through its export (the engine's own greedy
    frames), a baseline that is another file through torch (the same model here: the same frames); one folder
    given to two checkpoints, or to the torch engine, or exported from another model, is refused in one line before
    anything speaks."""
    import soundfile as sf
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    from valle.commands import evaluate

    sf.write(tmp_path / "u1.wav", np.zeros(24000, np.float32), 24000)
    sup = SupervisionSegment("u1", "u1", 0.0, 1.0, text="The quick brown fox.", language="en", speaker="spk")
    cuts = tmp_path / "cuts_test.jsonl.gz"
    CutSet([MonoCut("u1", 0.0, 1.0, 0, supervisions=[sup], recording=Recording.from_file(tmp_path / "u1.wav"))]
           ).to_file(cuts)
    same = shutil.copy(TINY / "tiny.pt", tmp_path / "same.pt")
    out = tmp_path / "eval"
    evaluate.main([*evaluate_args(cuts, out, TINY / "tiny.pt"), "--engine", "onnxruntime", "--onnx", str(fp32_dir),
                   "--baseline", str(same)])
    assert "tiny.pt, engine onnxruntime)" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    spec = report["checkpoints"]
    assert {spec[label]: e for label, e in report["engines"].items()} == {str(same): "torch",
                                                                           str(TINY / "tiny.pt"): "onnxruntime"}
    assert report["onnx"] == str(fp32_dir) and report["precision"] == "fp32"
    table = csv.DictReader((out / "utterances.tsv").read_text().splitlines(), delimiter="\t")
    rows = {spec.get(r["system"]): r for r in table}
    tok, prompt = get_tokenizer("vallex").encode("The quick brown fox.", "en"), load_prompt(TINY / "prompt.npz")
    request = Request(list(tok.ids), list(tok.languages), prompt)
    want = generate(OnnxVALLE.load(fp32_dir), [request], Sampling(top_k=1, max_frames=40))[0]
    assert int(rows[str(TINY / "tiny.pt")]["frames"]) == len(want) == int(rows[str(same)]["frames"]) > 0
    with pytest.raises(UserError, match=r"^--onnx \S+ is the export of one checkpoint, not of 2: evaluate the "):
        evaluate.main([*evaluate_args(cuts, out, TINY / "tiny.pt", same), "--engine", "onnxruntime", "--onnx",
                       str(fp32_dir)])
    with pytest.raises(UserError, match="--onnx is for --engine onnxruntime"):
        evaluate.main([*evaluate_args(cuts, out, TINY / "tiny.pt"), "--onnx", str(fp32_dir)])
    other = tmp_path / "other.pt"  # a folder that is not this checkpoint's: refused before the baseline speaks
    state = load_model(TINY / "tiny.pt", nhead=4)[0].state_dict()
    state["ar_predict_layer.weight"][0, 0] += 1.0
    torch.save({"model": state}, other)
    with pytest.raises(UserError, match="was exported from another model"):
        evaluate.main([*evaluate_args(cuts, tmp_path / "eval2", other), "--engine", "onnxruntime", "--onnx",
                       str(fp32_dir), "--baseline", str(same)])
    assert not list((tmp_path / "eval2").rglob("*.wav"))


@pytest.mark.slow
def test_export_then_load_then_speak(tmp_path):
    """The export command, then infer with --engine onnxruntime: the torch engine's codes and a wav."""
    from valle.commands import export_onnx, infer

    out = tmp_path / "onnx"
    export_onnx.main(["--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4", "--output", str(out)])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "fp32" and manifest["opset"] == 17 and manifest["config"]["d_model"] == 64
    base = ["--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4", "--top-k", "1", "--codec-weights", "random",
            "--text", "Hi.", "--prompt-preset", str(TINY / "prompt.npz")]
    runs = {}
    for engine in ("torch", "onnxruntime"):
        extra = ["--engine", engine] + (["--onnx", str(out)] if engine == "onnxruntime" else [])
        infer.main([*base, *extra, "--output", str(tmp_path / f"{engine}.wav"),
                    "--save-codes", str(tmp_path / f"{engine}.npy")])
        runs[engine] = np.load(tmp_path / f"{engine}.npy")
    assert runs["onnxruntime"].shape[1] == 8 and len(runs["onnxruntime"]) > 0
    np.testing.assert_array_equal(runs["onnxruntime"], runs["torch"])
    assert (tmp_path / "onnxruntime.wav").stat().st_size > 1000
    shutil.rmtree(out)
