"""Evaluate checkpoints: does the model speak the text, in the speaker's voice, without noise?

Every checkpoint speaks the same test sentences with the same prompts and seeds; each output and the real
recording are scored the same way (speaker similarity, WER/CER, MCD, failure flags). Writes report.html
(listen side by side), report.json, utterances.tsv, metrics.png and the wavs to --output-dir.

    valle evaluate --checkpoint exp/ar/best-valid-loss.pt exp/nar/best-valid-loss.pt vallex
    valle evaluate --checkpoint exp/nar/best-valid-loss.pt --engine onnxruntime --onnx exp/onnx/int8
"""

from __future__ import annotations

import argparse
from pathlib import Path

from valle.cli import ArgumentParser, UserError, add_engine_arguments, add_sampling_arguments, sampling_from_args
from valle.config import EvalOptions

_DEFAULT = EvalOptions()


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", nargs="+", required=True,
                   help="one or more checkpoint files, or 'vallex' (the released one); all are compared")
    p.add_argument("--adapter", nargs="+", default=None, metavar="FILE",
                   help="adapter files (at most one per half, e.g. exp/ar/best-valid-loss.pt "
                        "exp/nar/best-valid-loss.pt of a --adapter lora run) merged into every --checkpoint, "
                        "as valle infer --adapter")
    p.add_argument("--baseline", default="auto",
                   help="the model the checkpoints were fine-tuned from, scored beside them; each of their columns "
                        "says better or worse: auto (from their training state: the released model, vallex, for a "
                        "recipe's runs; the base of adapter files), none, or a checkpoint file or vallex [auto]")
    p.add_argument("--cuts", default=None,
                   help="cuts to evaluate [data/tokenized/cuts_test.jsonl.gz, else cuts_dev.jsonl.gz]")
    p.add_argument("--num-utterances", type=int, default=_DEFAULT.num_utterances,
                   help=f"how many cuts to evaluate, chosen deterministically by --seed; 0 = all "
                        f"[{_DEFAULT.num_utterances}]")
    p.add_argument("--prompt", nargs="+", default=["same-speaker"], metavar="same-speaker|preset NPZ",
                   help="same-speaker: another 3-10 s utterance of the target's speaker; "
                        "preset NPZ: one voice preset for every sentence [same-speaker]")
    p.add_argument("--output-dir", default="exp/eval", help="where the report and the wavs go [exp/eval]")
    p.add_argument("--batch-size", type=int, default=_DEFAULT.batch_size,
                   help=f"sentences generated together [{_DEFAULT.batch_size}]")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto [auto]")
    p.add_argument("--nhead", type=int, default=None, help="attention heads of the released file [16]")
    p.add_argument("--precision", default="fp32",
                   help="how every checkpoint runs: fp32, bf16, fp16 or int8 (as valle infer --precision) [fp32]")
    add_engine_arguments(p)  # a --baseline that is another model runs on torch
    p.add_argument("--codec-weights", default=_DEFAULT.codec_weights,
                   help=f"Encodec 24 kHz weights: pretrained, random (tests and demo: noise) or a file "
                        f"[{_DEFAULT.codec_weights}]")
    add_sampling_arguments(p, "sampling (as valle infer)", "seed of the sampling and of the utterance choice [0]")
    m = p.add_argument_group("metrics")
    m.add_argument("--speaker-model", default="resemblyzer",
                   help="speaker-embedding backend for SIM: resemblyzer, or none to skip SIM [resemblyzer]")
    m.add_argument("--asr-model", default="large-v3",
                   help="Whisper model name or local folder for WER/CER (faster-whisper or openai-whisper; "
                        "downloaded on first use), pocketsphinx (English, offline, less accurate), or none [large-v3]")
    m.add_argument("--asr-transcripts", default=None,
                   help="a name<TAB>text file of transcripts made elsewhere, instead of --asr-model "
                        "(name: the wav under --output-dir, e.g. wavs/ar-best-valid-loss/utt1.wav)")
    return p


def check_args(a: argparse.Namespace) -> EvalOptions:
    """-> the options the flags ask for (they check themselves)."""
    if a.prompt == ["same-speaker"]:
        prompt = "same-speaker"
    elif len(a.prompt) == 2 and a.prompt[0] == "preset":
        prompt = a.prompt[1]
    else:
        raise UserError(f"--prompt {' '.join(a.prompt)}: use 'same-speaker' or 'preset FILE.npz'")
    for c in a.checkpoint:
        if c != "vallex" and not Path(c).is_file():
            raise UserError(f"--checkpoint {c}: no such file (train first, or pass 'vallex')")
    for f in a.adapter or ():
        if not Path(f).is_file():
            raise UserError(f"--adapter {f}: no such file (train with --adapter lora first)")
    adapter_runs(a)
    if a.onnx is not None and len(a.checkpoint) > 1:
        raise UserError(f"--onnx {a.onnx} is the export of one checkpoint, not of {len(a.checkpoint)}: evaluate "
                        "the checkpoint it was exported from alone (one run per exported folder)")
    if a.baseline not in ("auto", "none", "vallex") and not Path(a.baseline).is_file():
        raise UserError(f"--baseline {a.baseline}: no such file (auto, none, vallex or a checkpoint)")
    return EvalOptions(num_utterances=a.num_utterances, prompt=prompt, seed=a.seed, sampling=sampling_from_args(a),
                       batch_size=a.batch_size, codec_weights=a.codec_weights)


def adapter_runs(a: argparse.Namespace) -> None:
    """Adapter files given as --checkpoint (what ./evaluate.sh finds after a --adapter lora run) become --adapter
    files on the base they were trained on: the first of each half is used, the others are named."""
    from valle.models.checkpoint import is_adapter_file, load_adapter

    files = [c for c in a.checkpoint if c != "vallex" and is_adapter_file(c)]
    if not files:
        return
    if a.adapter or len(files) != len(a.checkpoint):
        raise UserError(f"--checkpoint {' '.join(files)}: adapter files, not checkpoints: give them with --adapter "
                        "and their base with --checkpoint (e.g. --checkpoint vallex --adapter A.pt B.pt)")
    chosen, halves, bases = [], set(), set()
    for f in files:
        adapter = load_adapter(f)
        bases.add(adapter.base["source"])
        if not halves & set(adapter.spec.halves):
            chosen.append(f)
            halves |= set(adapter.spec.halves)
    if len(bases) > 1:
        raise UserError(f"--checkpoint {' '.join(files)}: adapters of different bases ({', '.join(sorted(bases))})")
    a.checkpoint, a.adapter = [bases.pop()], chosen
    skipped = [f for f in files if f not in chosen]
    print(f"adapters {' '.join(chosen)} on their base {a.checkpoint[0]}"
          + (f" (not evaluated, one per half: {' '.join(skipped)})" if skipped else ""))


def find_baseline(a: argparse.Namespace) -> str | None:
    """--baseline: auto is the base of the adapters, else the model the first trained checkpoint started from."""
    if a.baseline != "auto":
        return None if a.baseline == "none" else a.baseline
    if a.adapter:
        return a.checkpoint[0]
    return next((start for start in map(starting_model, a.checkpoint) if start is not None), None)


def starting_model(spec: str) -> str | None:
    """The model the training that wrote `spec` started from, followed back through the runs that made it (the NAR
    run started from the AR run, which started from vallex); None: not a training run's file, trained from
    scratch, or the start is gone."""
    start = _init_of(spec)
    while start is not None and start not in ("vallex", "none") and Path(start).is_file():
        earlier = _init_of(start)
        if earlier is None:  # a file no training here made: the start itself
            break
        start = earlier
    return start if start == "vallex" or (start not in (None, "none") and Path(start).is_file()) else None


def _init_of(spec: str) -> str | None:
    if spec == "vallex":
        return None
    from valle.safe_load import torch_load

    state = torch_load(spec)
    train = (((state.get("train_state") or {}).get("experiment") or {}).get("train") or {})
    return train.get("init_checkpoint")


def default_cuts() -> str:
    for split in ("test", "dev"):
        path = Path("data/tokenized") / f"cuts_{split}.jsonl.gz"
        if path.is_file():
            return str(path)
    raise UserError("no data/tokenized/cuts_test.jsonl.gz or cuts_dev.jsonl.gz here: run the recipe's prepare.sh, "
                    "or pass --cuts FILE")


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    options = check_args(a)
    cuts = a.cuts or default_cuts()

    from valle.device import resolve_device
    from valle.eval.asr import get_transcriber
    from valle.eval.evaluate import evaluate
    from valle.eval.speaker import get_speaker_encoder
    from valle.inference import check_engine
    from valle.models.precision import check_precision

    check_engine(a.engine, a.onnx, a.device, a.precision)  # before the scoring models load
    device = "cpu" if a.engine == "onnxruntime" else resolve_device(a.device)
    check_precision(a.precision, device)
    speaker = None if a.speaker_model == "none" else get_speaker_encoder(a.speaker_model, device=device)
    transcriber, asr_line = get_transcriber(a.asr_model, device=device, transcripts=a.asr_transcripts)
    print(asr_line)
    baseline = find_baseline(a)
    if baseline is not None:
        print(f"baseline: {baseline} (the model the checkpoints were fine-tuned from; --baseline none: without it)")
    paths = evaluate(a.checkpoint, cuts, a.output_dir, options, device=device, speaker=speaker,
                     transcriber=transcriber, asr_line=asr_line, nhead=a.nhead, adapters=a.adapter or (),
                     precision=a.precision, engine=a.engine, onnx=a.onnx, baseline=baseline)
    print_summary(paths["json"])
    print(f"report: {paths['html'].resolve()}")


def print_summary(report_json: Path) -> None:
    """One line per system: the headline numbers and the flags."""
    import json

    report = json.loads(report_json.read_text())
    for s in report["systems"]:
        m = s["metrics"]
        parts = [f"{k} {m[k]['mean']:.3f}" for k in ("sim_target", "sim_prompt", "error_rate", "mcd") if k in m]
        flags = ", ".join(f"{n} {f}" for f, n in s["flags"].items() if n) or "none"
        eos = f"; stopped at EOS {s['eos_rate']:.0%}" if s["eos_rate"] is not None else ""
        marks = s.get("versus_baseline", {})
        verdicts = "; ".join(f"{word} {', '.join(m for m, v in marks.items() if v == word)}"
                             for word in ("better", "worse") if word in marks.values())
        vs = f" | vs {report['baseline']}: {verdicts or 'the same'}" if marks else ""
        base = " (baseline)" if s["name"] == report.get("baseline") else ""
        print(f"  {s['name']}{base}: {'; '.join(parts) or 'no model metrics'}{eos}; flagged "
              f"{s['flagged']}/{s['utterances']} ({flags}){vs}")
