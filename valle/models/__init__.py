"""The VALL-E X model (valle.py), its layers (layers.py), static-shape AR decoding (decoding.py), LoRA adapters
(adapters.py) and checkpoint files (checkpoint/)."""

from valle.models.valle import VALLE, Sampling

__all__ = ["VALLE", "Sampling"]
