"""Evaluation during training (`--eval-interval N`): at a validation, at most every N optimizer steps, the current
weights speak a few fixed dev sentences with same-speaker prompts (the half that is not trained comes from the
checkpoint). Logged to tensorboard: eval/sim, eval/eos_rate, eval/duration_ratio, eval/flagged and the audio.

The probe at step 0 is the baseline: the model training started from (the released one) on the user's voice.
`best-eval.pt` starts as that model and is replaced only by weights that beat the best so far: a higher mean SIM
to the real recordings, and no more flagged outputs (runaway, too_short, silent, noise) and, where the outputs
were transcribed, no higher WER. At the end `verdict` says in one line whether fine-tuning beat the baseline.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from valle.audio import SAMPLE_RATE
from valle.codec import FRAME_RATE
from valle.config import MAX_FRAMES, Sampling
from valle.errors import UserError
from valle.eval.detectors import Thresholds
from valle.eval.evaluate import Scorer, build_items, synthesize_items

log = logging.getLogger("valle.trainer")


@dataclass(frozen=True)
class ProbeResult:
    """What one probe measured at `step`: mean SIM to the real recordings (NaN without a speaker encoder),
    the share of flagged outputs, and the WER (NaN when nothing transcribed the outputs)."""

    step: int
    sim: float
    flagged: float
    wer: float = math.nan

    def beats(self, other: ProbeResult) -> bool:
        """Better than `other`: a higher SIM, no more flagged outputs, and no higher WER where both have one."""
        wer_ok = not (math.isfinite(self.wer) and math.isfinite(other.wer)) or self.wer <= other.wer
        return self.sim > other.sim and self.flagged <= other.flagged and wer_ok  # NaN SIM: never better


def verdict(baseline: ProbeResult, best: ProbeResult, closest: ProbeResult | None, start: str) -> str:
    """One line: did fine-tuning beat `start` (the model it started from, probed as `baseline`)? `best`: the probe
    best-eval.pt holds; `closest`: the fine-tuned probe with the highest SIM (None: no probe after the start)."""
    if not math.isfinite(baseline.sim):
        return (f"the probe measured no speaker similarity (no speaker encoder: pip install resemblyzer): "
                f"best-eval.pt holds {start}")
    if best.step != baseline.step:
        return (f"fine-tuning beat {start} on your voice: SIM {best.sim:.2f} vs {baseline.sim:.2f}, flagged "
                f"{best.flagged:.0%} vs {baseline.flagged:.0%}{_wer(best, baseline)} (step {best.step}, "
                "best-eval.pt)")
    if closest is None:
        return f"fine-tuning was not probed after step {baseline.step}: best-eval.pt holds {start}"
    return (f"fine-tuning did not beat {start} on your voice: SIM {closest.sim:.2f} vs {baseline.sim:.2f}"
            + (f", flagged {closest.flagged:.0%} vs {baseline.flagged:.0%}" if closest.flagged > baseline.flagged
               else "") + _wer(closest, baseline) + f"; keep {start} with a prompt (best-eval.pt is it)")


def _wer(a: ProbeResult, b: ProbeResult) -> str:
    return f", WER {a.wer:.2f} vs {b.wer:.2f}" if math.isfinite(a.wer) and math.isfinite(b.wer) else ""


class EvalProbe:
    def __init__(self, dev_cuts, pool_cuts, codec_weights: str, device: torch.device, num_utterances: int = 4,
                 seed: int = 0, thresholds: Thresholds = Thresholds()):
        from valle.codec import Codec
        from valle.eval.speaker import get_speaker_encoder

        if codec_weights == "none":
            raise UserError("--eval-interval needs a codec to hear the outputs: pass --codec-weights "
                            "pretrained|PATH (the one the data was prepared with)")
        self.codec = Codec.from_weights(codec_weights, device=str(device))
        try:
            speaker = get_speaker_encoder("resemblyzer", device=str(device))
        except UserError as e:
            log.warning("eval probe without speaker similarity: %s", e)
            speaker = None
        self.items = build_items(dev_cuts, pool_cuts, num_utterances, seed, None)
        self.scorer = Scorer(speaker, None, thresholds, distances=False)
        longest = max(i.wave.numel() for i in self.items) / SAMPLE_RATE
        max_frames = int(thresholds.max_duration_ratio * longest * FRAME_RATE) + 1  # beyond it: runaway anyway
        # top-k 10 as the validation audio sample; seeded, so the series moves with the weights only
        self.sampling = Sampling(top_k=10, seed=seed, max_frames=min(max_frames, MAX_FRAMES))

    @torch.no_grad()
    def run(self, model, tokenizer, writer, step: int) -> ProbeResult:
        """Synthesize, score and log what this step's weights do."""
        from valle.inference import Synthesizer

        was_training = model.training
        synth = Synthesizer(model, tokenizer, self.codec)
        with torch.random.fork_rng(devices=[]):
            outputs = synthesize_items(synth, self.items, None, self.sampling, len(self.items),
                                       f"eval probe at step {step}")
        model.train(was_training)
        rows = [self.scorer.score("probe", item, wave, item.id, stopped_at_eos=at_eos)
                for item, (_, wave, at_eos) in zip(self.items, outputs)]
        sims = [r["sim_target"] for r in rows]
        values = {"sim": _mean(sims), "eos_rate": float(np.mean([r["stopped_at_eos"] for r in rows])),
                  "duration_ratio": _mean([r["duration_ratio"] for r in rows]),
                  "flagged": float(np.mean([bool(r["flags"]) for r in rows])),
                  "wer": _mean([r["error_rate"] for r in rows])}
        for name, value in values.items():
            if math.isfinite(value):
                writer.add_scalar(f"eval/{name}", value, step)
        for item, (_, wave, _) in zip(self.items, outputs):
            if wave.numel():
                writer.add_audio(f"eval/{item.id}", wave.float().cpu().unsqueeze(0), step, sample_rate=SAMPLE_RATE)
        flags = ", ".join(f"{r['utterance']}: {r['flags']}" for r in rows if r["flags"]) or "none"
        log.info("eval probe at step %d: sim %.3f, stopped at EOS %.0f%%, duration ratio %.2f, flagged %s",
                 step, values["sim"], 100 * values["eos_rate"], values["duration_ratio"], flags)
        return ProbeResult(step, values["sim"], values["flagged"], values["wer"])


def _mean(values) -> float:
    x = [v for v in values if math.isfinite(v)]
    return float(np.mean(x)) if x else math.nan
