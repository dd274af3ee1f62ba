#!/usr/bin/env python3
"""What int8 costs the ONNX Runtime engine in accuracy, full size: the AR's logits of an int8 export against the fp32
export's on the same inputs (relative L2 error per frame, median and worst, and top-1 agreement) over a prefill and
--steps teacher-forced steps (both engines fed fp32's greedy codes), and the NAR's greedy codes for the same AR codes
(agreement of codebooks 1-7). One JSON line; asserts nothing.

The inputs are bench/generate_speed.py's (full-size config, random weights of seed 0, a 225-frame prompt, 20 + 30
text ids); the folders are bench/onnx_speed.py's exports of that model:

    python bench/onnx_quality.py --fp32 exp/onnx_bench/fp32 --int8 exp/onnx_bench/int8
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.generate_speed import PROMPT_TEXT, inputs  # noqa: E402
from bench.machine import machine  # noqa: E402
from valle.onnx_engine.runtime import OnnxVALLE  # noqa: E402


def ar_logits(engine: OnnxVALLE, text: list, langs: list, prompts: list, codes: torch.Tensor | None, steps: int
              ) -> torch.Tensor:
    """(steps + 1, V+1) logits of the prefill and of `steps` steps fed `codes` (steps,), or the greedy codes when
    codes is None."""
    logits, step = engine.prefill(text, langs, prompts)  # (1, V+1)
    out = [logits[0]]
    for i in range(steps):
        ids = out[-1][:1024].argmax()[None] if codes is None else codes[i : i + 1]  # (1,)
        out.append(step(ids)[0])
    return torch.stack(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", type=Path, required=True, help="the fp32 export")
    p.add_argument("--int8", type=Path, required=True, help="the int8 export of the same model")
    p.add_argument("--steps", type=int, default=100, help="teacher-forced AR steps after the prefill [100]")
    args = p.parse_args()
    fp32, int8 = OnnxVALLE.load(args.fp32), OnnxVALLE.load(args.int8)
    if fp32.manifest["digest"] != int8.manifest["digest"]:
        sys.exit("error: the two folders hold exports of different models")
    text, langs, prompts, _ = (x[:1] for x in inputs(fp32, 1))
    want = ar_logits(fp32, text, langs, prompts, None, args.steps)  # (steps+1, V+1)
    codes = want[:, :1024].argmax(1)  # (steps+1,): fp32's greedy codes, the last one never fed
    got = ar_logits(int8, text, langs, prompts, codes, args.steps)
    error = (got - want).norm(dim=1) / want.norm(dim=1)  # (steps+1,)
    nar = [e.generate_nar(text, langs, prompts, [PROMPT_TEXT], [codes])[0] for e in (fp32, int8)]  # (T, Q) each
    agree = (got.argmax(1) == want.argmax(1)).float().mean().item()
    print(json.dumps({"ar_logits_rel_error_median": round(error.median().item(), 5),
                      "ar_logits_rel_error_max": round(error.max().item(), 5), "ar_top1_agreement": round(agree, 4),
                      "nar_codes_agreement": round((nar[0][:, 1:] == nar[1][:, 1:]).float().mean().item(), 4),
                      "frames": len(codes), "threads": torch.get_num_threads(), "machine": machine("cpu")}), flush=True)

if __name__ == "__main__":
    main()
