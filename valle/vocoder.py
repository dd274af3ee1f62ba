"""Vocos, a vocoder over Encodec codes (the optional package `vocos`): a cleaner decoder than Encodec's own.

Its config.yaml is read as data: only the three Encodec-Vocos classes, with plain arguments, all checked before
anything is imported or built.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from valle.codec import ENCODEC_URL
from valle.device import resolve_device
from valle.errors import UserError

VOCOS_REPO = "charactr/vocos-encodec-24khz"

# The only classes a Vocos config.yaml may name (the Encodec-based Vocos): a config is data, never code to import.
_VOCOS_CLASSES = {"feature_extractor": "vocos.feature_extractors.EncodecFeatures",
                  "backbone": "vocos.models.VocosBackbone", "head": "vocos.heads.ISTFTHead"}
_PLAIN_YAML = (int, float, str, bool, type(None))


def _vocos_part(config: dict, part: str, where: str) -> tuple[type, dict]:
    """The class and init_args of one part of a Vocos config, allowing only the known class and plain arguments."""
    import importlib
    import inspect

    entry = config.get(part)
    class_path = entry.get("class_path") if isinstance(entry, dict) else None
    if class_path != _VOCOS_CLASSES[part]:
        raise UserError(f"{where}: {part} class_path {class_path!r} is not {_VOCOS_CLASSES[part]}; refused "
                        "(a Vocos config may only name the Encodec Vocos classes; nothing from it was run)")
    module, name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    args = entry.get("init_args") or {}
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for key, value in args.items():
        values = value if isinstance(value, list) else [value]
        if key not in allowed or not all(isinstance(v, _PLAIN_YAML) for v in values):
            raise UserError(f"{where}: {part}.init_args.{key} = {value!r} is not a plain {name} argument; refused "
                            "(nothing from the config was run)")
    return cls, args


def build_vocos(config_path: Path, weights_path: Path):
    """Vocos from its config.yaml (read as data: the allow-listed classes only) and pytorch_model.bin
    (weights_only); the Encodec part of the feature extractor keeps the Encodec weights it was built with."""
    import yaml
    from vocos import Vocos

    config = yaml.safe_load(Path(config_path).read_text())
    if not isinstance(config, dict):
        raise UserError(f"{config_path}: not a Vocos config (expected a mapping with feature_extractor, backbone, "
                        "head)")
    parts = {part: _vocos_part(config, part, str(config_path)) for part in _VOCOS_CLASSES}  # all checked first
    model = Vocos(**{part: cls(**args) for part, (cls, args) in parts.items()})
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    state.update({f"feature_extractor.encodec.{k}": v for k, v in model.feature_extractor.encodec.state_dict().items()})
    model.load_state_dict(state)
    return model


class VocosDecoder:
    """Vocos vocoder over Encodec codes (optional package `vocos`): a cleaner decoder than Encodec's own."""

    BANDWIDTH_ID = 2  # index of 6 kbps in Vocos' bandwidths [1.5, 3, 6, 12]

    def __init__(self, vocos, device: str = "cpu"):
        self.vocos = vocos.eval().to(device)
        self.device = device

    @classmethod
    def from_weights(cls, spec: str = "pretrained", device: str = "cpu") -> VocosDecoder:
        """spec: "pretrained" (Hugging Face charactr/vocos-encodec-24khz) or a folder holding its
        config.yaml and pytorch_model.bin. Vocos also needs the Encodec 24 kHz weights (torch hub cache)."""
        try:
            import vocos  # noqa: F401  (an optional extra: say so before anything else)
        except ImportError:
            raise UserError("the vocos package is missing; pip install vocos (or the [vocos] extra)") from None
        device = resolve_device(device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                if spec == "pretrained":
                    from huggingface_hub import hf_hub_download

                    files = [Path(hf_hub_download(VOCOS_REPO, name)) for name in ("config.yaml", "pytorch_model.bin")]
                else:
                    files = [Path(spec) / "config.yaml", Path(spec) / "pytorch_model.bin"]
                return cls(build_vocos(*files), device)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - offline hub errors come in many types
            raise UserError(f"cannot load Vocos weights '{spec}' ({type(e).__name__}: {e}); download "
                            f"https://huggingface.co/{VOCOS_REPO} (config.yaml, pytorch_model.bin) into a folder and "
                            f"pass that folder, and put {ENCODEC_URL} in {Path(torch.hub.get_dir()) / 'checkpoints'}"
                            ) from None

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (T, 8) -> waveform (T * 320,) float32 at 24 kHz."""
        features = self.vocos.codes_to_features(codes.T.long().to(self.device))  # (1, 128, T)
        bandwidth = torch.tensor([self.BANDWIDTH_ID], device=self.device)
        return self.vocos.decode(features, bandwidth_id=bandwidth)[0].float().cpu()  # (T * 320,)
