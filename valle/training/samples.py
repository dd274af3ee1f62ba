"""The validation sample: a fixed dev sentence spoken by the model at each validation, into tensorboard."""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter

from valle.config import ExperimentConfig
from valle.models.valle import VALLE, Sampling


class AudioSampler:
    """Synthesizes the dev cut with the smallest id (no prompt, top-k 10, seeded) when a codec is set
    (--codec-weights); does nothing otherwise."""

    def __init__(self, cfg: ExperimentConfig, dev_cuts, device: torch.device):
        self.codec = None
        if cfg.train.codec_weights != "none":
            from valle.codec import Codec
            self.codec = Codec.from_weights(cfg.train.codec_weights, device=str(device))
        self.cut, self.device = min(dev_cuts, key=lambda c: c.id), device
        self.max_frames = 2 * self.cut.codes.shape[0]  # from the manifest: no need to read the codes

    def write(self, writer: SummaryWriter, model: VALLE, step: int) -> None:
        if self.codec is None:
            return
        from valle.audio import SAMPLE_RATE

        sup = self.cut.supervisions[0]
        ids, lang_ids = model.config.frame_text(sup.custom["text_ids"], sup.custom["text_langs"])
        text, langs = torch.tensor(ids, device=self.device), torch.tensor(lang_ids, device=self.device)  # (L,)
        no_prompt = torch.zeros(0, model.config.num_quantizers, dtype=torch.long, device=self.device)  # (0, 8)
        model.eval()
        codes = model.generate([text], [langs], [no_prompt], [0], Sampling(top_k=10),
                               max_frames=self.max_frames,
                               generator=torch.Generator(self.device).manual_seed(0))[0]  # (T, 8)
        wave = self.codec.decode(codes)  # (samples,)
        writer.add_audio("valid/sample", wave.float().cpu().unsqueeze(0), step, sample_rate=SAMPLE_RATE)
