"""The validation sample: a fixed dev sentence spoken by the model at each validation, into tensorboard."""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter

from valle.config import LANGUAGES, MAX_FRAMES, ExperimentConfig, Sampling
from valle.models.valle import VALLE


class AudioSampleWriter:
    """Speaks the dev cut with the smallest id (no prompt, top-k 10, seeded) through the Synthesizer, as
    valle infer does, when a codec is set (--codec-weights); does nothing otherwise."""

    def __init__(self, cfg: ExperimentConfig, dev_cuts, device: torch.device):
        from valle.inference import Request

        self.codec = None
        if cfg.train.codec_weights != "none":
            from valle.codec import Codec
            self.codec = Codec.from_weights(cfg.train.codec_weights, device=str(device))
        cut = min(dev_cuts, key=lambda c: c.id)
        sup = cut.supervisions[0]
        self.request = Request(list(sup.custom["text_ids"]), [LANGUAGES[i] for i in sup.custom["text_langs"]])
        frames = 2 * cut.codes.shape[0]  # from the manifest: no need to read the codes
        self.sampling = Sampling(top_k=10, seed=0, max_frames=min(frames, MAX_FRAMES))

    def write(self, writer: SummaryWriter, model: VALLE, step: int) -> None:
        if self.codec is None:
            return
        from valle.audio import SAMPLE_RATE
        from valle.inference import Synthesizer

        _, wave = Synthesizer(model, None, self.codec).render([self.request], self.sampling)[0]  # (samples,)
        writer.add_audio("valid/sample", wave.float().cpu().unsqueeze(0), step, sample_rate=SAMPLE_RATE)
