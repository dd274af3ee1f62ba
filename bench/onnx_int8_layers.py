#!/usr/bin/env python3
"""Which layers make the int8 NAR of the ONNX Runtime engine take other greedy codes than torch fp32, on a trained
model's dev cuts. Prints JSON lines; asserts nothing.

The inputs are bench/precision_quality.py's NAR rows' (each dev batch's first half as the prompt, the true
codebook 0 of the rest). Rows: torch bf16 and torch int8 (how fragile the greedy codes are under any rounding),
the fp32 and int8 exports, then the NAR quantized as the int8 export is (valle/onnx_engine/export.py quantize_int8's
settings) with one kind of matrix product left in fp32, and with only that kind quantized. Each row: agreement of
codebooks 1-7 with torch fp32's, and the first disagreements of each frame (its earlier codebooks agreeing: the
later ones follow from it), with fp32's gap between its two best logits there against the median gap.

    python bench/onnx_int8_layers.py --checkpoint exp/nar/best-valid-loss.pt --cuts data/tokenized/cuts_dev.jsonl.gz \
        --fp32 exp/onnx/fp32 --int8 exp/onnx/int8
"""

import argparse
import copy
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.machine import machine  # noqa: E402
from bench.precision_quality import dev_batches, load_engines, nar_inputs  # noqa: E402
from valle.models.precision import apply_precision  # noqa: E402
from valle.models.valle import VALLE  # noqa: E402
from valle.onnx_engine.runtime import OnnxVALLE, require  # noqa: E402

KINDS = ("in_proj", "out_proj", "linear1", "linear2", "nar_predict_layers")  # the NAR's matrix products by name


def greedy_codes(generate_nar, batches: list[dict]) -> torch.Tensor:
    """Codebooks 1..Q-1 of every generated frame of the dev batches -> (N, Q-1)."""
    return torch.cat([c for batch in batches for c in generate_nar(*nar_inputs(batch))])[:, 1:]


def fp32_codes_and_gaps(model: VALLE, batches: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """torch fp32's greedy codebooks (N, Q-1) and, for each, the gap between its two best logits (N, Q-1)."""
    stages = []
    hooks = [layer.register_forward_hook(lambda m, i, out: stages.append(out.float()))
             for layer in model.nar_predict_layers]
    codes, gaps = [], []
    try:
        for batch in batches:
            stages.clear()
            inputs = nar_inputs(batch)
            codes += model.generate_nar(*inputs)
            top = torch.stack([s.topk(2, dim=-1).values for s in stages], dim=2)  # (B, G, Q-1, 2)
            gaps += [(t[:n, :, 0] - t[:n, :, 1]) for t, n in zip(top, map(len, inputs[-1]))]  # (T_i, Q-1) each
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(codes)[:, 1:], torch.cat(gaps)


def compare(ref: torch.Tensor, gaps: torch.Tensor, codes: torch.Tensor) -> dict:
    """Greedy codebooks (N, Q-1) against fp32's `ref`, with fp32's gaps between its two best logits (N, Q-1)."""
    same = codes == ref  # (N, Q-1)
    earlier_same = F.pad(same, (1, 0), value=True)[:, :-1].int().cumprod(1).bool()  # (N, Q-1)
    first = ~same & earlier_same  # (N, Q-1): where a frame first parts from fp32
    row = {"agreement": round(float(same.float().mean()), 4),
           "per_codebook": [round(float(a), 4) for a in same.float().mean(0)],
           "disagreements": int((~same).sum()), "first_disagreements": int(first.sum()),
           "fp32_gap_median": round(float(gaps.median()), 4)}
    if first.any():
        row["fp32_gap_median_at_first_disagreements"] = round(float(gaps[first].median()), 4)
    return row


def quantized_variants(fp32_dir: Path, work: Path):
    """(name, folder) of the int8 NAR with one kind of MatMul left in fp32, then with only that kind quantized (the AR
    stays the fp32 export's: only the NAR is read)."""
    onnx = require("onnx", "this benchmark")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folded = work / "nar.folded.onnx"
    quant_pre_process(fp32_dir / "nar.onnx", folded, skip_symbolic_shape=True)
    names = [n.name for n in onnx.load(folded).graph.node if n.op_type == "MatMul"]
    for kind in KINDS:
        chosen = [n for n in names if n.startswith(f"/{kind}")]  # /in_proj/MatMul, /in_proj_3/MatMul, ...
        for mode, exclude in (("fp32", chosen), ("only int8", [n for n in names if n not in chosen])):
            folder = work / f"{kind}-{mode.replace(' ', '-')}"
            shutil.copytree(fp32_dir, folder)
            quantize_dynamic(folded, folder / "nar.onnx", weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)
            yield f"{kind} {mode} ({len(chosen)} MatMuls)", folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the trained checkpoint the folders were exported from")
    p.add_argument("--cuts", required=True, help="its dev cuts")
    p.add_argument("--fp32", type=Path, required=True, help="its fp32 export")
    p.add_argument("--int8", type=Path, required=True, help="its int8 export")
    p.add_argument("--max-cuts", type=int, default=40, help="dev cuts used, in batches of 4 [40]")
    args = p.parse_args()
    from valle.inference import load_for_inference

    torch.manual_seed(0)
    speaking = load_for_inference(args.checkpoint, device="cpu")
    fp32 = speaking.model
    engines = load_engines([str(args.fp32), str(args.int8)], fp32)
    batches = dev_batches(fp32, args.cuts, speaking.tokenizer.pad_id, args.max_cuts)

    def emit(name: str, generate_nar) -> None:
        with torch.inference_mode():
            row = compare(ref, gaps, greedy_codes(generate_nar, batches))
        print(json.dumps({"model": args.checkpoint, "nar": name, **row, "frames": ref.shape[0],
                          "machine": machine("cpu")}), flush=True)

    with torch.inference_mode():
        ref, gaps = fp32_codes_and_gaps(fp32, batches)
    for precision in ("bf16", "int8"):
        emit(f"torch {precision}", apply_precision(copy.deepcopy(fp32), precision).eval().generate_nar)
    for engine in engines.values():
        emit(f"onnxruntime {engine.precision}", engine.generate_nar)
    with tempfile.TemporaryDirectory() as work:
        for name, folder in quantized_variants(args.fp32, Path(work)):
            emit(f"onnxruntime int8, {name}", OnnxVALLE.load(folder).generate_nar)


if __name__ == "__main__":
    main()
