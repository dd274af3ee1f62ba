"""The Compare tab: the same test sentences from several checkpoints, side by side.

It runs valle.eval.evaluate.evaluate, what valle evaluate runs (same sentences, prompts and seeds for every
checkpoint; detectors, speaker similarity, MCD), into a report folder of the workspace, and the page shows
its summary, chart and wavs. No ASR here (WER/CER need a Whisper model: use valle evaluate --asr-model).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from valle.app.workspace import Workspace
from valle.config import EvalOptions, Sampling
from valle.errors import UserError

SUMMARY_HEADERS = ["system", "utterances", "flagged", "stopped at EOS", "SIM to prompt", "SIM to target", "MCD"]


@dataclass
class CompareOptions:
    """The Compare tab's fields; they become an EvalOptions (its defaults, its checks) with workspace paths."""

    checkpoints: list[str]  # vallex | checkpoints in the workspace
    data_dir: str = "data"  # its tokenized/cuts_test (else cuts_dev) are the sentences
    output: str = "eval"  # the report folder
    num_utterances: int = 4  # fewer than the command's: the page waits for them
    prompt: str = EvalOptions.prompt  # same-speaker | a preset .npz in the workspace
    seed: int = EvalOptions.seed
    max_frames: int = 0  # 0: the model's limit
    codec_weights: str = EvalOptions.codec_weights
    speaker_model: str = "resemblyzer"  # resemblyzer | none


@dataclass
class CompareResult:
    message: str
    summary: list[list]  # rows under SUMMARY_HEADERS
    chart: Path  # metrics.png
    files: list[Path]  # report.html, report.json, utterances.tsv
    grid: list[tuple[str, str, list[tuple[str, Path]]]]  # (utterance, text, [(system, wav)])


def _cuts(ws: Workspace, data_dir: str) -> Path:
    tokenized = ws.path(data_dir, "data folder", must_exist=True) / "tokenized"
    for split in ("test", "dev"):
        if (tokenized / f"cuts_{split}.jsonl.gz").is_file():
            return tokenized / f"cuts_{split}.jsonl.gz"
    raise UserError(f"no cuts_test.jsonl.gz or cuts_dev.jsonl.gz in {ws.relative(tokenized)}: prepare the data first")


def _mean(system: dict, metric: str) -> str:
    value = system["metrics"].get(metric)
    return f"{value['mean']:.3f}" if value else "–"


def run_compare(ws: Workspace, o: CompareOptions, device: str = "cpu") -> CompareResult:
    from valle.eval.evaluate import evaluate

    if not o.checkpoints:
        raise UserError("checkpoints: pick one or more to compare")
    checkpoints = [c if c == "vallex" else str(ws.path(c, "checkpoint", must_exist=True)) for c in o.checkpoints]
    prompt = o.prompt.strip() or "same-speaker"
    if prompt != "same-speaker":
        prompt = str(ws.path(prompt, "preset", must_exist=True))
    codec = o.codec_weights.strip()
    if codec not in ("pretrained", "random"):
        codec = str(ws.path(codec, "codec weights", must_exist=True))
    seed = int(o.seed)
    options = EvalOptions(num_utterances=int(o.num_utterances), prompt=prompt, seed=seed, codec_weights=codec,
                          sampling=Sampling(seed=seed, max_frames=int(o.max_frames) or None))  # 0: the model's limit
    speaker = None
    if o.speaker_model != "none":
        from valle.eval.speaker import get_speaker_encoder

        speaker = get_speaker_encoder(o.speaker_model, device=device)
    out_dir = ws.path(o.output, "report folder")
    paths = evaluate(checkpoints, _cuts(ws, o.data_dir), out_dir, options, device=device, speaker=speaker,
                     transcriber=None,
                     asr_line="none in the app (WER/CER: valle evaluate --asr-model)", log=lambda line: None)
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    summary = [[s["name"], s["utterances"], s["flagged"],
                "–" if s["eos_rate"] is None else f"{s['eos_rate']:.0%}",
                _mean(s, "sim_prompt"), _mean(s, "sim_target"), _mean(s, "mcd")] for s in report["systems"]]
    with open(paths["tsv"], encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    grid: dict[str, tuple[str, list]] = {}
    for row in rows:
        grid.setdefault(row["utterance"], (row["text"], []))[1].append((row["system"], out_dir / row["wav"]))
    message = (f"{len(report['systems']) - 1} checkpoint(s) on {report['num_utterances']} sentences of "
               f"{ws.relative(Path(report['cuts']))}; report in {ws.relative(out_dir)}/")
    return CompareResult(message, summary, paths["png"], [paths["html"], paths["json"], paths["tsv"]],
                         [(utt, text, systems) for utt, (text, systems) in grid.items()])
