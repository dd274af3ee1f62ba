"""Evaluate checkpoints on the same sentences, prompts and seeds: synthesize with the library's Synthesizer,
score every output (detectors, SIM, WER/CER, MCD, STOI/PESQ) and the ground truth the same way."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from valle.audio import SAMPLE_RATE
from valle.config import EvalOptions
from valle.errors import UserError
from valle.eval import distance
from valle.eval.asr import CHARACTER_LANGUAGES, Transcriber, error_counts
from valle.eval.detectors import Thresholds, detect
from valle.eval.results import GROUND_TRUTH, summarize, versus, write_report
from valle.eval.select import choose_prompt, select_utterances, speaker_of, speaker_rates
from valle.eval.speaker import SpeakerEncoder
from valle.models.valle import FRAMES_PER_TEXT_TOKEN, Sampling


@dataclass
class Item:
    """One target utterance: its text, real recording, and prompt (a cut of the same speaker, or a preset)."""

    cut: object
    wave: torch.Tensor  # (T,) the real recording at 24 kHz
    prompt_cut: object | None
    prompt_wave: torch.Tensor | None  # (Tp,) what the prompt sounds like
    expected_rate_seconds: float  # the speaker's seconds per text token x this text's tokens (NaN if unknown)
    embeddings: dict = field(default_factory=dict)  # "target"/"prompt" -> speaker embedding (cached)

    @property
    def id(self) -> str:
        return self.cut.id

    @property
    def text(self) -> str:
        return self.cut.supervisions[0].text

    @property
    def language(self) -> str:
        return self.cut.supervisions[0].language or "en"

    @property
    def speaker(self) -> str:
        return speaker_of(self.cut)


def mono(cut) -> torch.Tensor:
    """A cut's audio (T,) at 24 kHz (prepared cuts are mono 24 kHz already)."""
    audio = cut.resample(SAMPLE_RATE).load_audio()  # (channels, T)
    return torch.from_numpy(audio.mean(0).astype(np.float32))


def build_items(cuts, pool, num_utterances: int, seed: int, preset_wave: torch.Tensor | None) -> list[Item]:
    """The chosen targets with their prompts (`preset_wave`: every target uses the preset). `cuts` and `pool` may
    be lazy manifests of any size: one pass over `pool` keeps only the cuts of the targets' speakers."""
    targets = select_utterances(cuts, num_utterances, seed)
    speakers = {speaker_of(cut) for cut in targets}
    pool = [c for c in pool if speaker_of(c) in speakers]
    rates = speaker_rates(pool)
    items = []
    for cut in targets:
        prompt_cut = None if preset_wave is not None else choose_prompt(cut, pool, seed)
        ids = (cut.supervisions[0].custom or {}).get("text_ids") or []
        rate = rates.get(speaker_of(cut))
        items.append(Item(cut, mono(cut), prompt_cut, mono(prompt_cut) if prompt_cut is not None else preset_wave,
                          rate * len(ids) if rate and ids else math.nan))
    if preset_wave is None and not any(i.prompt_cut for i in items):
        raise UserError("no target has another utterance of its speaker to use as a prompt: "
                        "use --prompt preset NPZ, or evaluate cuts of speakers with several utterances")
    return items


class Scorer:
    """Scores one waveform of an item: detectors always; SIM and WER when their backends are there; MCD (and
    STOI/PESQ when installed) against the real recording."""

    def __init__(self, speaker: SpeakerEncoder | None, transcriber: Transcriber | None,
                 thresholds: Thresholds = Thresholds(), distances: bool = True):
        self.speaker, self.transcriber, self.thresholds, self.distances = speaker, transcriber, thresholds, distances

    def _embedding(self, item: Item, which: str) -> np.ndarray | None:
        if which not in item.embeddings:
            wave = item.wave if which == "target" else item.prompt_wave
            item.embeddings[which] = self.speaker.embed(wave, SAMPLE_RATE) if wave is not None else None
        return item.embeddings[which]

    def score(self, system: str, item: Item, wave: torch.Tensor, key: str,
              stopped_at_eos: bool | None = None) -> dict:
        """One row of utterances.tsv."""
        real = system == GROUND_TRUTH
        gt_seconds = item.wave.numel() / SAMPLE_RATE
        d = detect(wave, SAMPLE_RATE, expected_seconds=None if real else gt_seconds, stopped_at_eos=stopped_at_eos,
                   thresholds=self.thresholds)
        prompt = item.prompt_cut.id if item.prompt_cut is not None else "preset" if item.prompt_wave is not None else ""
        row = {"system": system, "utterance": item.id, "speaker": item.speaker, "prompt": prompt,
               "language": item.language, "text": item.text, "seconds": d.seconds, "gt_seconds": gt_seconds,
               "duration_ratio": d.duration_ratio, "rate_ratio": d.seconds / item.expected_rate_seconds,
               "stopped_at_eos": d.stopped_at_eos, "sim_target": math.nan, "sim_prompt": math.nan,
               "error_rate": math.nan, "errors": math.nan, "ref_units": math.nan, "transcript": "",
               "mcd": math.nan, "stoi": math.nan, "pesq": math.nan, "level_db": d.level_db,
               "silence_ratio": d.silence_ratio, "flatness": d.flatness, "modulation_db": d.modulation_db,
               "flags": ",".join(d.flags), "wav": key}
        if self.speaker is not None:
            own = self._embedding(item, "target") if real else self.speaker.embed(wave, SAMPLE_RATE)
            row["sim_prompt"] = self.speaker.similarity(own, self._embedding(item, "prompt"))
            if not real:
                row["sim_target"] = self.speaker.similarity(own, self._embedding(item, "target"))
        if self.transcriber is not None:
            heard = self.transcriber.transcribe(wave, SAMPLE_RATE, item.language, key) if wave.numel() else ""
            row["transcript"] = heard
            row["errors"], row["ref_units"] = error_counts(item.text, row["transcript"], item.language)
            row["error_rate"] = row["errors"] / row["ref_units"]
        if self.distances and not real and wave.numel() > 0.1 * SAMPLE_RATE:
            row["mcd"], path = distance.mcd(item.wave, wave, SAMPLE_RATE)
            aligned = distance.align_to_reference(wave, path, item.wave.numel(), SAMPLE_RATE)
            row.update(distance.optional_quality(item.wave, aligned, SAMPLE_RATE))
        return row


def checkpoint_label(spec: str, taken: set[str], adapters: Sequence[str] = ()) -> str:
    """A short unique name for a checkpoint: `vallex`, or `<folder>-<file stem>` (exp/ar/best.pt -> ar-best);
    with adapters, their names follow after `+` (vallex+ar-best+nar-best)."""
    def name(spec: str) -> str:
        path = Path(spec)
        return spec if spec == "vallex" else (f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem)

    label = re.sub(r"[^\w.+-]+", "_", "+".join(name(str(s)) for s in [spec, *adapters]))
    base, n = label, 2
    while label in taken or label == GROUND_TRUTH:
        label, n = f"{base}-{n}", n + 1
    taken.add(label)
    return label


def frame_limit(model, num_text_ids: int, max_frames: int | None) -> int:
    """The AR's frame limit for one request of `num_text_ids` (prompt + target), as `VALLE.generate_ar` sets it."""
    if max_frames is not None:
        return max_frames
    framed, _ = model.config.frame_text([0] * num_text_ids, ["en"] * num_text_ids)  # + BOS/EOS when the model has them
    return FRAMES_PER_TEXT_TOKEN * len(framed)


def synthesize_items(synth, items: list[Item], preset, sampling: Sampling, batch_size: int,
                     label: str) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """-> per item (codes (T, 8), wave (T * 320,), stopped at EOS). Batch b is seeded as valle infer's
    (Sampling.for_batch)."""
    from valle.inference import Prompt, Request, check_prompt
    from valle.text import TextError

    requests, limits = [], []
    for item in items:
        try:
            tok = synth.tokenizer.encode(item.text, item.language)
            prompt = preset
            if item.prompt_cut is not None:
                p_text = item.prompt_cut.supervisions[0].text
                p_lang = item.prompt_cut.supervisions[0].language or item.language
                prompt = Prompt(torch.from_numpy(item.prompt_cut.load_codes().astype(np.int64)),
                                list(synth.tokenizer.encode(p_text, p_lang).ids), p_lang)
        except TextError as e:
            raise UserError(f"{label}: utterance {item.id}: {e}") from None
        if prompt is not None:
            check_prompt(prompt, synth.model, where=f"prompt for {item.id}")
        requests.append(Request(list(tok.ids), list(tok.languages), prompt))
        limits.append(frame_limit(synth.model, len(prompt.text_ids if prompt else []) + len(tok.ids),
                                  sampling.max_frames))
    out = []
    batches = range(0, len(requests), batch_size)
    for b, start in enumerate(tqdm(batches, desc=f"synthesize {label}", unit="batch", leave=False)):
        with torch.inference_mode():
            results = synth.render(requests[start:start + batch_size], sampling.for_batch(b))
        for (codes, wave), limit in zip(results, limits[start:]):
            out.append((codes, wave, len(codes) < limit))
    return out


def write_wav(path: Path, wave: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.float().numpy(), SAMPLE_RATE)


def score_ground_truth(scorer: Scorer, items: list[Item], out_dir: Path) -> list[dict]:
    rows = []
    for item in tqdm(items, desc="score ground truth", leave=False):
        key = f"wavs/{GROUND_TRUTH}/{item.id}.wav"
        write_wav(out_dir / key, item.wave)
        if item.prompt_wave is not None:
            write_wav(out_dir / f"wavs/prompt/{item.id}.wav", item.prompt_wave)
        rows.append(scorer.score(GROUND_TRUTH, item, item.wave, key))
    return rows


def evaluate_checkpoint(spec: str, label: str, items: list[Item], scorer: Scorer, codec, out_dir: Path, *,
                        preset_path: str | None, sampling: Sampling, batch_size: int, device: str,
                        nhead: int | None = None, adapters: Sequence[str] = (), precision: str = "fp32",
                        engine: str = "torch", onnx: str | Path | None = None) -> list[dict]:
    """Synthesize every item with one checkpoint (its adapters merged, in `precision`, or run by the ONNX Runtime
    engine from its export `onnx`), write its wavs and score them."""
    from valle.inference import Synthesizer, load_for_inference, load_prompt

    speaking = load_for_inference(spec, adapters, device=device, nhead=nhead, precision=precision, engine=engine,
                                  onnx=onnx)
    preset = load_prompt(preset_path) if preset_path else None
    synth = Synthesizer(speaking.model, speaking.tokenizer, codec)
    outputs = synthesize_items(synth, items, preset, sampling, batch_size, label)
    rows = []
    for item, (codes, wave, at_eos) in zip(items, tqdm(outputs, desc=f"score {label}", leave=False)):
        key = f"wavs/{label}/{item.id}.wav"
        write_wav(out_dir / key, wave)
        row = scorer.score(label, item, wave, key, stopped_at_eos=at_eos)
        row["frames"] = len(codes)
        rows.append(row)
    return rows


def unit_name(items: list[Item]) -> str:
    """WER when every scored language is read per word, CER when all are zh/ja, else "WER/CER"."""
    char = {i.language in CHARACTER_LANGUAGES for i in items}
    return "CER" if char == {True} else "WER" if char == {False} else "WER/CER"


def load_pool(cuts_path: Path):
    """The cuts to evaluate and every cut of the corpus (them and the other splits next to them), for prompts;
    both read lazily."""
    from valle.data.files import open_cuts

    cuts = open_cuts(cuts_path, "pass --cuts a prepared cuts_*.jsonl.gz (run the recipe's prepare.sh first)")
    pool = cuts
    for other in sorted(cuts_path.parent.glob("cuts_*.jsonl.gz")):
        if other.name.startswith(("cuts_train.", "cuts_dev.", "cuts_test.")) and other != cuts_path:
            pool = pool + open_cuts(other)  # the splits hold no cut twice
    return cuts, pool


def evaluate(checkpoints: list[str], cuts_path: str | Path, out_dir: str | Path, options: EvalOptions = EvalOptions(),
             *, device: str = "cpu", speaker: SpeakerEncoder | None = None, transcriber: Transcriber | None = None,
             asr_line: str = "", nhead: int | None = None, adapters: Sequence[str] = (), precision: str = "fp32",
             engine: str = "torch", onnx: str | Path | None = None, thresholds: Thresholds = Thresholds(),
             baseline: str | None = None, log=print) -> dict[str, Path]:
    """Evaluate `checkpoints` (paths or "vallex") on the same utterances, prompts and seeds (`options`); write the
    report. adapters: adapter files merged into every checkpoint (as valle infer --adapter). precision, engine and
    onnx: how every checkpoint runs (as --precision, --engine and --onnx; an ONNX folder is the export of one
    checkpoint). baseline: the model they were fine-tuned from, evaluated first without the adapters (or, without
    adapters, one of `checkpoints`), on the torch engine when it is not the exported checkpoint; every other system
    marks per column whether it is better or worse.
    """
    from valle.codec import Codec
    from valle.inference import check_export, load_prompt
    from valle.onnx_engine.runtime import read_manifest

    o = options
    cuts_path, out_dir = Path(cuts_path), Path(out_dir)
    cuts, pool = load_pool(cuts_path)
    codec = Codec.from_weights(o.codec_weights, device=device)
    preset_path = None if o.prompt == "same-speaker" else o.prompt
    preset_wave = codec.decode(load_prompt(preset_path).codes) if preset_path else None  # (T,)
    items = build_items(cuts, pool, o.num_utterances, o.seed, preset_wave)
    log(f"evaluating {len(checkpoints)} checkpoint(s) on {len(items)} utterances of {cuts_path}")
    if engine == "onnxruntime":  # the folder is the checkpoint's, before the baseline's work
        check_export(checkpoints[0], adapters, onnx, nhead)
    scorer = Scorer(speaker, transcriber, thresholds)
    rows = score_ground_truth(scorer, items, out_dir)
    taken: set[str] = set()
    runs = [(c, checkpoint_label(c, taken, adapters), adapters, {"engine": engine, "onnx": onnx}) for c in checkpoints]
    if baseline is not None and (adapters or baseline not in checkpoints):  # another model: not the ONNX folder's
        runs.insert(0, (baseline, checkpoint_label(baseline, taken), (), {"engine": "torch", "onnx": None}))
    base_label = next((label for spec, label, extra, _ in runs if spec == baseline and not extra), None)
    for spec, label, extra, how in runs:
        log(f"{label}: synthesizing and scoring ({' + '.join([spec, *map(str, extra)])}, engine {how['engine']})")
        rows += evaluate_checkpoint(spec, label, items, scorer, codec, out_dir, preset_path=preset_path,
                                    sampling=o.sampling, batch_size=o.batch_size, device=device, nhead=nhead,
                                    adapters=extra, precision=precision, **how)
    systems = [{"name": name, **summarize([r for r in rows if r["system"] == name])}
               for name in [GROUND_TRUTH, *(label for _, label, _, _ in runs)]]
    if base_label is not None:
        base = next(s for s in systems if s["name"] == base_label)
        for s in systems:
            if s["name"] not in (GROUND_TRUTH, base_label):
                s["versus_baseline"] = versus(s, base)
    report = {
        "cuts": str(cuts_path), "num_utterances": len(items), "seed": o.seed,
        "prompt": f"preset {preset_path}" if preset_path else
                  "same-speaker (another utterance of the target's speaker)",
        "sampling": {"top_k": o.sampling.top_k, "top_p": o.sampling.top_p, "temperature": o.sampling.temperature,
                     "max_frames": o.sampling.max_frames},
        "codec_weights": o.codec_weights, "precision": read_manifest(onnx)["precision"] if onnx else precision,
        "engines": {label: how["engine"] for _, label, _, how in runs}, "onnx": str(onnx) if onnx else None,
        "speaker_model": speaker.name if speaker else "none (SIM skipped)",
        "asr": asr_line, "error_unit": unit_name(items), "thresholds": asdict(thresholds),
        "checkpoints": {label: spec for spec, label, _, _ in runs}, "adapters": [str(a) for a in adapters],
        "baseline": base_label, "systems": systems,
    }
    if any(i.prompt_cut is None for i in items) and not preset_path:
        report["notes"] = ["utterances whose speaker has no other utterance were synthesized without a prompt"]
    return write_report(report, rows, out_dir)
