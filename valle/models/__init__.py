"""The VALL-E X model (valle.py), its layers (layers.py) and checkpoint handling (checkpoint/), static-shape decoding (decoding.py), LoRA (adapters.py)."""

from valle.models.valle import VALLE, Sampling

__all__ = ["VALLE", "Sampling"]
