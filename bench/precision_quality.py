#!/usr/bin/env python3
"""What a lower precision costs in quality, against fp32 on the same inputs. Prints JSON lines; asserts nothing.

Without --checkpoint (the full-size released config, random weights: the relative error of the logits is what
counts there): for each precision, the relative error of the AR logits (teacher-forced over the whole sequence, and
over --steps AR steps fed the known frames, as decoding runs them) and of the NAR logits of every codebook, with the
top-1 agreement of each.

With --checkpoint (a model that has learned something, e.g. egs/mini's exp/ar/best-valid-loss.pt) and --cuts (its
dev cuts): the dev loss and top-10 accuracy of both halves in each precision, as the trainer validates (the same
NAR codebooks and prefixes for every precision), and the same logit errors on the dev batches.

With --onnx (folders of `valle export onnx` from --checkpoint, fp32 and int8), a row per folder for the ONNX Runtime
engine against torch fp32: the AR's dev loss and top-10 accuracy from the engine's logits teacher-forced (the prefill
over [text | BOS], then each known frame fed as a step), with their error and top-1 agreement at the same positions;
the NAR's greedy codebooks 1-7 (each item's first half as the prompt, the true codebook 0 of the rest) against torch
fp32's on the same inputs, and both against the true codes.

    python bench/precision_quality.py --precision bf16 int8
    python bench/precision_quality.py --checkpoint exp/nar/best-valid-loss.pt --cuts data/tokenized/cuts_dev.jsonl.gz
    python bench/precision_quality.py --checkpoint exp/nar/best-valid-loss.pt --cuts data/tokenized/cuts_dev.jsonl.gz \
        --onnx exp/onnx/fp32 exp/onnx/int8
"""

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.machine import machine  # noqa: E402
from valle.config import ModelConfig  # noqa: E402
from valle.errors import UserError  # noqa: E402
from valle.models.decoding import ar_step  # noqa: E402
from valle.models.precision import apply_precision  # noqa: E402
from valle.models.valle import VALLE, top10_accuracy  # noqa: E402
from valle.onnx_engine.export import model_digest  # noqa: E402
from valle.onnx_engine.runtime import OnnxVALLE  # noqa: E402


def compare(ref: torch.Tensor, low: torch.Tensor) -> dict:
    """logits (N, V) of fp32 and of a lower precision -> relative error and top-1 agreement."""
    ref, low = ref.float(), low.float()
    return {"rel_error": round(float((low - ref).norm() / ref.norm()), 5),
            "top1_agreement": round(float((low.argmax(-1) == ref.argmax(-1)).float().mean()), 5),
            "positions": ref.shape[0]}


def forward_logits(model: VALLE, batch: dict, half: str, codebook: int | None = None) -> tuple[torch.Tensor, dict]:
    """The logits the loss of `half` is computed on (N, V), and the loss itself (in float32 for every precision)."""
    layer = model.ar_predict_layer if half == "ar" else model.nar_predict_layers[codebook - 1]
    captured = []

    def keep(module, args, out):
        captured.append(out.float())
        return captured[-1]

    handle = layer.register_forward_hook(keep)
    torch.manual_seed(0)  # the NAR's prompt prefix is drawn: the same for every precision
    out = model(batch, half=half, **({"codebook": codebook} if half == "nar" else {}))
    handle.remove()
    return captured[0], out


def step_logits(model: VALLE, batch: dict, steps: int) -> torch.Tensor:
    """AR logits of `steps` decoding steps after a prompt of each item's first half, fed the known frames ->
    (steps * B, V+1)."""
    codes, lens = batch["codes"], batch["code_lens"]
    cut = int(lens.min()) // 2
    text, langs = item_text(batch)
    seq, valid, text_len, next_pos = model.ar_inputs(text, langs, [c[:cut] for c in codes])
    logits, state = model.ar_prefill(seq, valid, text_len, next_pos, steps)
    out = [logits]
    for t in range(min(steps, int(lens.min()) - cut) - 1):
        state.ids.copy_(codes[:, cut + t, 0])
        out.append(ar_step(model, state, width=state.filled + 1))
        state.positions.add_(1)
        state.column.add_(1)
        state.filled += 1
    return torch.cat(out)


def item_text(batch: dict) -> tuple[list, list]:
    """Each item's text ids (L_i,) and their languages (L_i,), without the batch's padding."""
    lens = batch["text_lens"]
    return [t[:n] for t, n in zip(batch["text_tokens"], lens)], [g[:n] for g, n in zip(batch["text_langs"], lens)]


def random_batch(config: ModelConfig, batch: int, text_len: int, frames: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"text_tokens": torch.randint(5, 70, (batch, text_len), generator=g),
            "text_lens": torch.full((batch,), text_len), "text_langs": torch.zeros(batch, text_len, dtype=torch.long),
            "codes": torch.randint(0, 1024, (batch, frames, config.num_quantizers), generator=g),
            "code_lens": torch.full((batch,), frames)}


def dev_batches(model: VALLE, cuts_path: str, pad_id: int, max_cuts: int) -> list[dict]:
    from valle.data.dataset import SpeechDataset
    from valle.data.files import open_cuts

    cuts = open_cuts(Path(cuts_path)).subset(first=max_cuts).to_eager()
    dataset = SpeechDataset(pad_id, model.config)
    return [dataset[cuts.subset(cut_ids=ids)] for ids in chunks([c.id for c in cuts], 4)]


def chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def measure(models: dict[str, VALLE], batches: list[dict], steps: int) -> dict[str, dict]:
    """Per precision: loss and top-10 accuracy of both halves, and logit errors against fp32."""
    q = models["fp32"].config.num_quantizers
    cases = [("ar", None)] + [("nar", k) for k in range(1, q)]
    result = {name: {"ar": [], "nar": [], "ar_step": []} for name in models}
    for batch in batches:
        for half, k in cases:
            for name, model in models.items():
                logits, out = forward_logits(model, batch, half, k)
                result[name][half].append((logits, out))
        for name, model in models.items():
            result[name]["ar_step"].append((step_logits(model, batch, steps), None))
    summary = {}
    for name in models:
        row = {}
        for part in ("ar", "nar", "ar_step"):
            ref = torch.cat([lg for lg, _ in result["fp32"][part]])
            low = torch.cat([lg for lg, _ in result[name][part]])
            row[part] = compare(ref, low) if name != "fp32" else {"positions": ref.shape[0]}
            if part != "ar_step":
                row[part] |= averaged([o for _, o in result[name][part]])
        summary[name] = row
    return summary


def averaged(outs: list[dict]) -> dict:
    """The loss and top-10 accuracy of several batches (model outputs) as the trainer's validation averages them."""
    n = sum(o["num_frames"] for o in outs)
    return {"loss": round(sum(float(o["loss"]) * o["num_frames"] for o in outs) / n, 5),
            "top10_acc": round(sum(float(o["top10_acc"]) * o["num_frames"] for o in outs) / n, 5)}


def engine_ar(engine: OnnxVALLE, batch: dict) -> tuple[torch.Tensor, dict]:
    """The engine's AR logits teacher-forced on a dev batch, at the positions and with the loss of VALLE's AR loss:
    the prefill over [text | BOS] gives frame 0's logits, each known frame fed as a step the next one's (EOS after
    the last) -> logits (N, V+1) in the order of the torch rows (item by item), and the loss as VALLE.forward's."""
    codes, lens = batch["codes"][..., 0], batch["code_lens"]  # (B, T) zero-padded, (B,)
    text, langs = item_text(batch)
    no_prompt = [codes.new_zeros(0, engine.config.num_quantizers)] * len(text)
    logits, step = engine.prefill(text, langs, no_prompt)  # (B, V+1)
    out = [logits] + [step(codes[:, t]) for t in range(int(lens.max()))]  # T+1 x (B, V+1)
    keep = torch.arange(len(out)) <= lens[:, None]  # (B, T+1): real frames and one EOS per utterance
    logits = torch.stack(out, dim=1)[keep]  # (N, V+1)
    at_end = torch.arange(len(out)) == lens[:, None]  # (B, T+1)
    targets = F.pad(codes, (0, 1), value=0).masked_fill(at_end, engine.eos)[keep]  # (N,)
    is_code = targets != engine.eos
    return logits, {"loss": F.cross_entropy(logits, targets), "num_frames": int(targets.numel()),
                    "top10_acc": top10_accuracy(logits[is_code], targets[is_code])}


def nar_inputs(batch: dict) -> tuple[list, list, list, list, list]:
    """generate_nar's inputs for a dev batch: each item's first half (as step_logits cuts it) as the prompt, with
    every codebook, and the true codebook 0 of the rest as the AR's codes."""
    codes, lens = batch["codes"], batch["code_lens"]
    cut = int(lens.min()) // 2
    text, langs = item_text(batch)
    return text, langs, [c[:cut] for c in codes], [0] * len(text), [c[cut:n, 0] for c, n in zip(codes, lens)]


def measure_engine(fp32: VALLE, engine: OnnxVALLE, batches: list[dict]) -> dict:
    """The ONNX engine against torch fp32 on the dev batches: the AR's loss and top-10 accuracy, the error and top-1
    agreement of its logits at the same positions; the agreement of the NAR's greedy codebooks 1..Q-1 per codebook,
    and the accuracy of both engines' against the true codes."""
    ref_logits, logits, outs, ref_codes, codes, truth = [], [], [], [], [], []
    for batch in batches:
        ref_logits.append(forward_logits(fp32, batch, "ar")[0])
        got, out = engine_ar(engine, batch)
        logits.append(got)
        outs.append(out)
        inputs = nar_inputs(batch)
        ref_codes += fp32.generate_nar(*inputs)  # (T_i, Q) each
        codes += engine.generate_nar(*inputs)
        truth += [c[n - len(r) : n] for c, n, r in zip(batch["codes"], batch["code_lens"], inputs[-1])]  # (T_i, Q)
    ref_codes, codes, truth = (torch.cat(c)[:, 1:] for c in (ref_codes, codes, truth))  # (N, Q-1)
    same = (codes == ref_codes).float()  # (N, Q-1)
    return {"ar": compare(torch.cat(ref_logits), torch.cat(logits)) | averaged(outs),
            "nar_codes": {"agreement": round(float(same.mean()), 5), "frames": codes.shape[0],
                          "per_codebook": [round(float(a), 5) for a in same.mean(0)],
                          "accuracy": round(float((codes == truth).float().mean()), 5),
                          "accuracy_fp32": round(float((ref_codes == truth).float().mean()), 5)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a trained checkpoint [full-size random weights]")
    p.add_argument("--nhead", type=int, default=None, help="attention heads of --checkpoint [its config, else 16]")
    p.add_argument("--cuts", default=None, help="dev cuts of --checkpoint (with --checkpoint)")
    p.add_argument("--max-cuts", type=int, default=40, help="dev cuts used, in batches of 4 [40]")
    p.add_argument("--precision", nargs="+", default=["bf16", "int8"], help="compared with fp32 [bf16 int8]")
    p.add_argument("--steps", type=int, default=40, help="teacher-forced AR steps per batch [40]")
    p.add_argument("--onnx", nargs="+", default=[], metavar="DIR",
                   help="folders of `valle export onnx --checkpoint` (fp32, int8), compared with torch fp32 too")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    args = p.parse_args()
    if args.onnx and not args.checkpoint:
        p.error("--onnx needs the --checkpoint it was exported from, and its --cuts")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.checkpoint:
        from valle.inference import load_for_inference

        if not args.cuts:
            p.error("--checkpoint needs --cuts (its dev cuts)")
        speaking = load_for_inference(args.checkpoint, device="cpu", nhead=args.nhead)
        fp32 = speaking.model
        batches = dev_batches(fp32, args.cuts, speaking.tokenizer.pad_id, args.max_cuts)
        source = args.checkpoint
    else:
        fp32 = VALLE(ModelConfig()).eval()
        batches = [random_batch(fp32.config, batch=2, text_len=50, frames=150)]
        source = "full-size config, random weights"
    engines = load_engines(args.onnx, fp32)
    models = {"fp32": fp32, **{name: apply_precision(copy.deepcopy(fp32), name).eval() for name in args.precision}}
    with torch.inference_mode():
        summary = measure(models, batches, args.steps)
    for name, row in summary.items():
        print(json.dumps({"model": source, "precision": name, **row, "batches": len(batches),
                          "machine": machine("cpu")}), flush=True)
    for folder, engine in engines.items():
        with torch.inference_mode():
            row = measure_engine(fp32, engine, batches)
        print(json.dumps({"model": source, "engine": "onnxruntime", "onnx": folder, "precision": engine.precision,
                          **row, "batches": len(batches), "machine": machine("cpu")}), flush=True)


def load_engines(folders: list[str], fp32: VALLE) -> dict[str, OnnxVALLE]:
    """The ONNX engine of each folder, before anything is measured; one line and exit 2 when a folder is not an
    export of `fp32` (or not an export)."""
    digest = model_digest(fp32)
    try:
        return {folder: OnnxVALLE.load(folder, digest=digest) for folder in folders}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

if __name__ == "__main__":
    main()
