#!/usr/bin/env python3
"""One full-size linear (1024 -> 4096, the feed-forward's first) as an ONNX MatMul through each 8-bit kind of ONNX
Runtime's quantizers, against float32, at the rows of an AR step (1 x 1024) and of a prompt pass (325 x 1024).
Prints one JSON line per kind, input and thread count (median ms over --repeats, the kinds interleaved so that
machine load touches all alike) with its relative error against float32; asserts nothing.

Kinds: fp32; `dynamic` (quantize_dynamic: QUInt8 weights per output channel, activations quantized per call,
MatMulInteger); `nbits-B-aA` (MatMulNBitsQuantizer, 8-bit weights in blocks of B along the input, accuracy level A:
0 widens the weights to float32, 4 quantizes the activations to int8 per block and multiplies in int8).

    python bench/ort_int8_linear.py --repeats 30
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402
from onnxruntime.quantization.matmul_nbits_quantizer import (  # noqa: E402
    DefaultWeightOnlyQuantConfig,
    MatMulNBitsQuantizer,
)

from bench.machine import machine  # noqa: E402

N_IN, N_OUT = 1024, 4096
ROWS = {"step, 1 position": 1, "prompt pass, 325 positions": 325}


def linear_model(path: Path) -> None:
    """A MatMul x (N, 1024) @ W (1024, 4096), W random as nn.Linear's init."""
    w = (np.random.default_rng(0).uniform(-1, 1, (N_IN, N_OUT)) / np.sqrt(N_IN)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "linear",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", N_IN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", N_OUT])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def nbits(src: Path, dst: Path, block: int, accuracy: int) -> None:
    config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=accuracy, bits=8)
    quantizer = MatMulNBitsQuantizer(onnx.load(src), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst))


def kinds(folder: Path, blocks: list[int], levels: list[int]) -> dict[str, Path]:
    fp32 = folder / "fp32.onnx"
    linear_model(fp32)
    out = {"fp32": fp32, "dynamic": folder / "dynamic.onnx"}
    quantize_dynamic(fp32, out["dynamic"], weight_type=QuantType.QUInt8, per_channel=True)
    out["dynamic-s8-7bit"] = folder / "dynamic-s8-7bit.onnx"
    quantize_dynamic(fp32, out["dynamic-s8-7bit"], weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    for block in blocks:
        for level in levels:
            out[f"nbits-{block}-a{level}"] = folder / f"nbits-{block}-a{level}.onnx"
            nbits(fp32, out[f"nbits-{block}-a{level}"], block, level)
    return out


def session(path: Path, threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30, help="timed calls per kind and input [30]")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads to try [1 2]")
    p.add_argument("--blocks", type=int, nargs="+", default=[32, 64, 128], help="MatMulNBits block sizes")
    p.add_argument("--levels", type=int, nargs="+", default=[0, 4], help="MatMulNBits accuracy levels [0 4]")
    p.add_argument("--no-spinning", action="store_true", help="threads sleep between ops instead of spinning")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = kinds(Path(tmp), args.blocks, args.levels)
        for threads in args.threads:
            sessions = {k: session(v, threads, not args.no_spinning) for k, v in paths.items()}
            for label, rows in ROWS.items():
                x = {"x": np.random.default_rng(1).standard_normal((rows, N_IN)).astype(np.float32)}
                want = sessions["fp32"].run(None, x)[0]
                times: dict[str, list[float]] = {k: [] for k in sessions}
                for _ in range(args.repeats):
                    for k, s in sessions.items():
                        t0 = time.perf_counter()
                        s.run(None, x)
                        times[k].append(time.perf_counter() - t0)
                for k, s in sessions.items():
                    error = float(np.linalg.norm(s.run(None, x)[0] - want) / np.linalg.norm(want))
                    print(json.dumps({"kind": k, "input": label, "threads": threads,
                                      "ms": round(1000 * median(times[k]), 3), "rel_error": round(error, 5),
                                      "mb": round(paths[k].stat().st_size / 2**20, 2),
                                      "load_avg_1min": machine("cpu")["load_avg_1min"]}), flush=True)


if __name__ == "__main__":
    main()
