"""Typed configuration shared by the CLIs, the trainer and the checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Language ids inside the model (the released checkpoint's order).
LANGUAGE_IDS = {"en": 0, "zh": 1, "ja": 2}


@dataclass
class ModelConfig:
    """Sizes and switches of the VALL-E X model. Defaults are the released checkpoint's."""

    d_model: int = 1024
    nhead: int = 16
    num_layers: int = 12
    text_vocab_size: int = 2048  # rows of the text embedding (the released tokenizer uses ids < 70)
    audio_vocab_size: int = 1024  # Encodec codes per codebook; AR adds EOS (1024) and BOS (1025)
    num_quantizers: int = 8
    num_languages: int = 3
    share_embedding: bool = True  # NAR predict layer j tied to NAR audio embedding j+2, as released
    add_prenet: bool = False
    prefix_mode: int = 1
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
