"""Checkpoint files, one module per concern:

  formats.py        safe reading (weights_only), format detection (released, icefall, toolkit, safetensors) and
                    the model config a file was trained with
  layout.py         strict loading with a readable, grouped report; the expected layout and its check
  build.py          the model a checkpoint was trained with, built and loaded strictly (`load_model`)
  export.py         atomic saving of toolkit checkpoints; exports (released layout, safetensors)
  adapter_files.py  adapter (LoRA) files: save, load, recognise; load their pairs, merge them into a model
  hub.py            `--checkpoint vallex`: the released checkpoint from a cache, a plain URL or the Hugging Face Hub

Callers import from here (`from valle.models.checkpoint import load_model`).
"""

from valle.models.checkpoint.adapter_files import (
                                             LoadedAdapter,
                                             is_adapter_file,
                                             load_adapter,
                                             load_pairs,
                                             merge_adapter_files,
                                             save_adapter,
)
from valle.models.checkpoint.build import load_model
from valle.models.checkpoint.export import export_released, export_safetensors, save_checkpoint
from valle.models.checkpoint.formats import (
                                             ADAPTER_TAG,
                                             DEFAULT_NHEAD,
                                             FORMAT_TAG,
                                             RELEASED_NAME,
                                             LoadedCheckpoint,
                                             config_from_state_dict,
                                             load_checkpoint,
)
from valle.models.checkpoint.hub import (
                                             ENV_CACHE_DIR,
                                             ENV_FILENAME,
                                             ENV_REPO,
                                             ENV_URL,
                                             RELEASED_FILENAME,
                                             RELEASED_REPO,
                                             cache_dir,
                                             resolve_checkpoint,
)
from valle.models.checkpoint.layout import expected_layout, layout_report, load_state_dict_strict, verify_layout
from valle.safe_load import CheckpointError

__all__ = [
    "ADAPTER_TAG", "DEFAULT_NHEAD", "FORMAT_TAG", "RELEASED_NAME", "RELEASED_REPO", "RELEASED_FILENAME",
    "ENV_CACHE_DIR", "ENV_REPO", "ENV_FILENAME", "ENV_URL",
    "CheckpointError", "LoadedCheckpoint", "LoadedAdapter",
    "load_checkpoint", "config_from_state_dict", "layout_report", "load_state_dict_strict", "expected_layout",
    "verify_layout", "load_model", "save_checkpoint", "export_released", "export_safetensors",
    "save_adapter", "load_adapter", "is_adapter_file", "load_pairs", "merge_adapter_files", "cache_dir",
    "resolve_checkpoint",
]
