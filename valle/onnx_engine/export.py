"""Export a speaking model to ONNX: DIR/ar.onnx, DIR/nar.onnx and DIR/manifest.json.

The manifest names the model the files came from (a digest of its state dict and config, adapters merged), the
format of the files (FORMAT), the opset, the precision: fp32 as exported, or int8 (every MatMul's weights
quantized by ONNX Runtime's quantizer, see quantize_int8, and every embedding table in 8 bits per row, see
quantize_embeddings), and the AR's value cache: fp32, or int8 with the int8 precision (graphs.cached_values). The
engine (valle/onnx_engine/runtime.py) refuses a folder whose digest is not the model's, or whose format is not its
own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from valle.errors import UserError
from valle.models.valle import VALLE
from valle.onnx_engine.graphs import ARGraph, NARGraph

if TYPE_CHECKING:
    import onnx

OPSET = 17
FORMAT = 3  # of the files: 3 = the AR reads the host's KV cache (keys (B, H, C, Dh), values fp32 or int8)
PRECISIONS = ("fp32", "int8")
MANIFEST = "manifest.json"
FILES = ("ar.onnx", "nar.onnx")
AR_INPUTS = ["text_ids", "text_langs", "text_pos", "audio_ids", "audio_pos", "valid"]
NAR_INPUTS = ["text_ids", "text_langs", "codes", "is_prompt", "is_gen", "key_valid", "gen_index"]

log = logging.getLogger("valle.onnx_engine")


def model_digest(model: VALLE) -> str:
    """sha256 of the config and of every tensor of the state dict (name, dtype, shape, bytes), as fp32."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def kv_names(layers: int, prefix: str, int8_values: bool = False) -> list[str]:
    """past.0.key, past.0.value, (past.0.value_scale,) past.1.key, ... (prefix "past" or "new")."""
    kinds = ("key", "value", "value_scale") if int8_values else ("key", "value")
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in kinds]


def _example(model: VALLE, int8_values: bool) -> tuple[tuple, tuple]:
    """Small inputs of every size the graphs take as dynamic (all different and non-zero, so none is traced as a
    constant): the AR's and the NAR's."""
    c, B, L, A, S, Y = model.config, 2, 3, 4, 5, 6
    dh = c.d_model // c.nhead
    ids = torch.randint(5, 70, (B, L))
    langs = torch.zeros(B, L, dtype=torch.long)
    layer = [torch.zeros(B, c.nhead, S, dh), torch.zeros(B, c.nhead, S, dh)]  # keys, values (B, H, S, Dh)
    if int8_values:
        layer = [layer[0], layer[1].to(torch.int8), torch.ones(B, c.nhead, S)]  # values' scales (B, H, S)
    past = layer * c.num_layers
    ar = (ids, langs, torch.arange(L).expand(B, L), torch.randint(0, 1024, (B, A)), torch.arange(A).expand(B, A),
          torch.ones(B, S + L + A, dtype=torch.bool), *past)
    is_prompt = torch.arange(Y).expand(B, Y) < 2
    nar = (ids, langs, torch.randint(0, 1024, (B, Y, c.num_quantizers)), is_prompt, ~is_prompt,
           torch.ones(B, L + Y, dtype=torch.bool), torch.arange(2, Y).expand(B, Y - 2))
    return ar, nar


def export(model: VALLE, out_dir: str | Path, precision: str = "fp32", opset: int = OPSET,
           value_cache: str | None = None) -> Path:
    """Write the two graphs of `model` (fp32, eval) and the manifest to `out_dir`; -> the manifest's path. The AR's
    values are cached in `value_cache` (fp32 or int8; the precision's unless given: int8 weights with an fp32 value
    cache are for measuring what the 8-bit cache costs)."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: use one of {', '.join(PRECISIONS)}")
    if model.config.add_prenet:
        raise UserError("the model has prenets (add_prenet): the ONNX engine takes models without them, as released")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the manifest is written last: a folder whose export was cut off is refused, not run by an older manifest
    (out / MANIFEST).unlink(missing_ok=True)
    model = model.float().eval()
    value_cache = value_cache or precision
    if value_cache not in PRECISIONS:
        raise UserError(f"value cache {value_cache}: use one of {', '.join(PRECISIONS)}")
    layers, int8_values = model.config.num_layers, value_cache == "int8"
    ar_example, nar_example = _example(model, int8_values)
    past, new = kv_names(layers, "past", int8_values), kv_names(layers, "new", int8_values)
    ar_axes = {n: {0: "batch", 1: "text"} for n in AR_INPUTS[:3]}
    ar_axes |= {n: {0: "batch", 1: "audio"} for n in AR_INPUTS[3:5]}
    ar_axes |= {"valid": {0: "batch", 1: "total"}, "logits": {0: "batch"}}
    ar_axes |= {n: {0: "batch", 2: "cache"} for n in past} | {n: {0: "batch", 2: "new"} for n in new}
    nar_axes = {n: {0: "batch", 1: "text"} for n in NAR_INPUTS[:2]}
    nar_axes |= {n: {0: "batch", 1: "frames"} for n in NAR_INPUTS[2:5] + ["codes_out"]}
    nar_axes |= {"key_valid": {0: "batch", 1: "keys"}, "gen_index": {0: "batch", 1: "generated"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on traced sizes and its deprecation notice
        _export(ARGraph(model, int8_values).eval(), ar_example, out / FILES[0], AR_INPUTS + past, ["logits"] + new,
                ar_axes, opset)
        _export(NARGraph(model).eval(), nar_example, out / FILES[1], NAR_INPUTS, ["codes_out"], nar_axes, opset)
    if precision == "int8":
        for name in FILES:
            quantize_int8(out / name)
    manifest = {"digest": model_digest(model), "format": FORMAT, "config": model.config.to_dict(), "opset": opset,
                "precision": precision, "value_cache": value_cache, "files": list(FILES), "torch": torch.__version__}
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def holds_export(folder: str | Path, model: VALLE, precision: str) -> bool:
    """Whether `folder` already holds what export(model, folder, precision) would write, in this format (the
    benchmarks reuse it)."""
    path = Path(folder) / MANIFEST
    want = {"digest": model_digest(model), "format": FORMAT, "precision": precision, "value_cache": precision}
    return path.is_file() and json.loads(path.read_text()).items() >= want.items()


def _export(graph: torch.nn.Module, example: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict, opset: int) -> None:
    torch.onnx.export(graph, example, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                      opset_version=opset, do_constant_folding=True, dynamo=False)


def quantize_int8(path: Path) -> None:
    """Replace the fp32 file at `path` by its int8 form: ONNX Runtime's pre-processing (constant folding: the NAR's
    adaptive-norm projections of its fixed stage embeddings become constants), then its dynamic quantization of
    every MatMul with weights: signed 7-bit weights per output channel, activations quantized to uint8 per call.

    Why this kind, measured on this AVX2 CPU without VNNI (bench/ort_int8_linear.py, docs/benchmarks.md): uint8
    activations times int8 weights run on vpmaddubsw, whose pairwise sums saturate int16 with full 8-bit weights
    (relative error of the tiny model's logits 1.07); 7 bits keep every sum in range and ran 1.1-1.3x faster than
    uint8 weights (another kernel: uint8 x uint8), at 1.5 % error of the full-size AR logits against 1.1 %.
    MatMulNBits (8-bit weight-only, any block size and accuracy level) ran the AR step no faster and its prompt
    pass (many positions, as the NAR) 2x slower. The NAR's 7 output layers stay fp32 (`nar_output_products`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folded, quantized = path.with_suffix(".folded.onnx"), path.with_suffix(".int8.onnx")
    quant_pre_process(path, folded, skip_symbolic_shape=True)
    quantize_dynamic(folded, quantized, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=nar_output_products(folded))
    folded.unlink()
    model = onnx.load(quantized)
    quantize_embeddings(model)
    onnx.save(model, path)
    quantized.unlink()


def nar_output_products(path: Path) -> list[str]:
    """The MatMul nodes of the NAR's 7 output layers in the file at `path` (none in the AR's), left fp32 by the int8
    export: quantized, they alone moved the trained mini model's greedy NAR codes from fp32's on 5.9 % of its dev
    codes (94.1 % agreement; every other kind of product quantized alone kept 99.0-99.7 %, all but them 98.8 %:
    bench/onnx_int8_layers.py, docs/benchmarks.md). They read only the generated frames, 7 x 4 MB at full size."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.name.startswith("/nar_predict_layers.")]


def quantize_embeddings(model: onnx.ModelProto) -> None:
    """Every Gather from a float table (the embeddings: 52 MB of the full-size int8 files otherwise) becomes ONNX
    Runtime's GatherBlockQuantized over the table in unsigned 8 bits, symmetric around 128, with one float scale per
    row (max |row| / 127). ONNX Runtime's quantizer (op_types_to_quantize "Gather") gives one scale per table: on the
    full-size model its AR logits moved 1.72 % from fp32's against 1.64 % per row, and its NAR codes agreed on
    88.0 % against 90.2 % (docs/benchmarks.md)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    tables = {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
    done: set[str] = set()
    for i, node in enumerate(graph.node):
        along_rows = all(a.name != "axis" or a.i == 0 for a in node.attribute)
        if node.op_type != "Gather" or node.input[0] not in tables or not along_rows:
            continue
        name, cols = node.input[0], tables[node.input[0]].dims[1]
        if name not in done:
            table = numpy_helper.to_array(tables[name])  # (rows, cols)
            scale = np.abs(table).max(axis=1, keepdims=True) / 127  # (rows, 1)
            q = np.rint(table / np.where(scale > 0, scale, 1)) + 128  # (rows, cols) in 1..255
            graph.initializer.remove(tables[name])
            graph.initializer.extend([numpy_helper.from_array(q.astype(np.uint8), f"{name}_uint8"),
                                      numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")])
            done.add(name)
        block = max(16, 1 << (cols - 1).bit_length())  # a power of 2 of at least 16 (the op's rule): the whole row
        graph.node[i].CopyFrom(helper.make_node(
            "GatherBlockQuantized", [f"{name}_uint8", node.input[1], f"{name}_scale"], list(node.output), node.name,
            domain="com.microsoft", gather_axis=0, quantize_axis=1, block_size=block, bits=8))
    if done and "com.microsoft" not in {o.domain for o in model.opset_import}:
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
