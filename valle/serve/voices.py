"""Voices of the speech API: one small JSON file per voice in a voices folder, all on one base model in memory.

`NAME.json` (every key optional):
    {"prompt": "NAME.npz" | "NAME.wav",        a released voice preset, or a recording (then prompt_text too)
     "prompt_text": "what is said in it", "prompt_language": "en",
     "adapters": ["NAME-ar.safetensors"],      LoRA adapter files of the served base (at most one per half)
     "language": "en",                         the language of the text the voice speaks by default
     "sampling": {"top_k": 0, "top_p": 1.0, "temperature": 1.0}}
File names are relative to the voices folder and stay in it. The voice `default` (no prompt, no adapter) exists
unless the folder defines its own. Adapters stay unmerged: the base is loaded once, and the adapters of the voices
being generated are hooked onto it (valle.models.adapters.LoRA) while they run, so a voice switch reloads nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from valle.config import LANGUAGES, Sampling, SamplingError
from valle.errors import UserError
from valle.inference import Prompt, check_prompt, load_prompt, make_prompt, save_prompt
from valle.storage import atomic_write, is_partial

VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
VOICE_SAMPLING_KEYS = ("top_k", "top_p", "temperature")
VOICE_KEYS = {"prompt", "prompt_text", "prompt_language", "adapters", "language", "sampling"}
DEFAULT_VOICE = "default"


class BadVoiceName(UserError):
    """A voice name that is not a name (a path, empty, odd characters)."""


class UnknownVoice(UserError):
    """A well-formed name of a voice this server does not have."""


def check_name(name: object) -> str:
    if not isinstance(name, str) or not VOICE_NAME.fullmatch(name):
        raise BadVoiceName(f"voice {name!r}: a voice name is 1-64 letters, digits, - and _, starting with a letter "
                           "or digit (never a path)")
    return name


def sampling_defaults(s: Sampling) -> dict:
    """The sampling a voice file keeps (the voice's defaults; seed and frames are the request's)."""
    return {key: getattr(s, key) for key in VOICE_SAMPLING_KEYS}


@dataclass(frozen=True)
class Voice:
    name: str
    prompt: Prompt | None = None
    adapters: tuple[str, ...] = ()  # adapter file names: voices with the same ones are generated together
    language: str = "en"
    sampling: Sampling = field(default_factory=Sampling)

    def describe(self) -> dict:
        return {"name": self.name, "language": self.language, "adapters": list(self.adapters),
                "prompt_seconds": round(self.prompt.seconds, 2) if self.prompt else 0.0,
                "sampling": sampling_defaults(self.sampling)}


class VoiceBank:
    """The voices of a folder on one base `model`; `activate(adapters)` hooks a voice's adapters on."""

    def __init__(self, folder: str | os.PathLike | None, model, tokenizer, codec):
        self.folder = Path(folder) if folder is not None else None
        self.model, self.tokenizer, self.codec = model, tokenizer, codec
        self.tokenizer_info = tokenizer.to_dict() if tokenizer is not None else None  # what adapters must match
        self.voices: dict[str, Voice] = {DEFAULT_VOICE: Voice(DEFAULT_VOICE)}
        self._loras: dict[str, object] = {}  # adapter file name -> LoRA (hooks off unless active)
        self.active: tuple[str, ...] = ()
        if self.folder is not None:
            if not self.folder.is_dir():
                raise UserError(f"--voices {self.folder}: no such folder; make it (it may start empty)")
            for path in sorted(p for p in self.folder.glob("*.json") if not is_partial(p)):  # not a killed write
                voice = self._read(path)
                self.voices[voice.name] = voice

    def get(self, name: object) -> Voice:
        voice = self.voices.get(check_name(name))
        if voice is None:
            raise UnknownVoice(f"voice {name!r} not found; this server has {', '.join(sorted(self.voices))}")
        return voice

    def activate(self, adapters: tuple[str, ...]) -> None:
        """Hook exactly these adapters onto the base (the others off)."""
        for name in self.active:
            self._loras[name].remove()
        for name in adapters:
            self._loras[name].add_hooks()
        self.active = adapters

    def create(self, name: str, wave: torch.Tensor, transcript: str, language: str,
               sampling: Sampling | None = None) -> Voice:
        """A new voice from a recording (mono 24 kHz (T,)) and its transcript: NAME.npz and NAME.json are written."""
        if self.folder is None:
            raise UserError("this server has no voices folder (start it with --voices DIR) to keep new voices in")
        check_name(name)
        if name in self.voices:
            raise UserError(f"voice {name!r} exists already; choose another name")
        if language not in LANGUAGES:
            raise UserError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
        if not transcript.strip():
            raise UserError("the transcript is empty; give the text spoken in the recording")
        prompt = make_prompt(wave, transcript, language, self.tokenizer, self.codec)
        check_prompt(prompt, self.model, where="the recording")
        voice = Voice(name, prompt, (), language, sampling or Sampling())
        spec = {"prompt": f"{name}.npz", "language": language, "sampling": sampling_defaults(voice.sampling)}
        fix = "free some space in the voices folder"
        atomic_write(self.folder / f"{name}.npz", lambda tmp: save_prompt(tmp, prompt), f"voice {name}", fix)
        atomic_write(self.folder / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(spec, indent=1) + "\n"),
                     f"voice {name}", fix)
        self.voices[name] = voice
        return voice

    # ---- reading voice files

    def _read(self, path: Path) -> Voice:
        where = str(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{where}: not a readable JSON voice file ({e})") from None
        if not isinstance(spec, dict) or set(spec) - VOICE_KEYS:
            extra = sorted(set(spec) - VOICE_KEYS) if isinstance(spec, dict) else spec
            raise UserError(f"{where}: unknown keys {extra}; a voice file may have {', '.join(sorted(VOICE_KEYS))}")
        name = check_name(path.stem)
        language = spec.get("language", "en")
        if language not in LANGUAGES:
            raise UserError(f"{where}: language {language!r}; use one of {', '.join(LANGUAGES)}")
        sampling = spec.get("sampling", {})
        if not isinstance(sampling, dict) or set(sampling) - set(VOICE_SAMPLING_KEYS):
            raise UserError(f"{where}: sampling must be an object with top_k, top_p and/or temperature")
        try:
            sampling = Sampling(**sampling)
        except SamplingError as e:
            raise UserError(f"{where}: sampling: {e.api_message}") from None
        adapters = spec.get("adapters", [])
        if not isinstance(adapters, list):
            raise UserError(f"{where}: adapters must be a list of file names")
        return Voice(name, self._prompt(spec, language, where), self._load_adapters(adapters, where), language,
                     sampling)

    def _file(self, value: object, where: str) -> Path:
        """A file named in a voice file: a plain name of a file in the voices folder."""
        if not isinstance(value, str) or Path(value).name != value or value.startswith("."):
            raise UserError(f"{where}: {value!r} must be the name of a file in {self.folder} (no folders)")
        path = self.folder / value
        if not path.is_file():
            raise UserError(f"{where}: {path} not found")
        return path

    def _prompt(self, spec: dict, language: str, where: str) -> Prompt | None:
        if "prompt" not in spec:
            return None
        path = self._file(spec["prompt"], where)
        if path.suffix == ".npz":
            prompt = load_prompt(path)
        else:
            from valle.audio import load_audio

            if not spec.get("prompt_text"):
                raise UserError(f"{where}: the recording {path.name} needs prompt_text, what is said in it")
            wave, _ = load_audio(path)
            prompt = make_prompt(wave, spec["prompt_text"], spec.get("prompt_language", language), self.tokenizer,
                                 self.codec)
        check_prompt(prompt, self.model, where=f"{where}: {path.name}")
        return prompt

    def _load_adapters(self, names: list, where: str) -> tuple[str, ...]:
        halves: dict[str, str] = {}
        for name in names:
            self._file(name, where)
            if name not in self._loras:
                self._loras[name] = self._load_lora(self.folder / name)
            for half in self._loras[name].spec.halves:
                if half in halves:
                    raise UserError(f"{where}: {name} and {halves[half]} both adapt the {half.upper()} half: "
                                    "give one adapter per half")
                halves[half] = name
        return tuple(names)

    def _load_lora(self, path: Path):
        """An adapter file as unmerged LoRA hooks on the base (checked against it; hooks off)."""
        from valle.models.adapters import LoRA, base_overrides, check_base
        from valle.models.checkpoint import load_adapter, load_pairs
        from valle.text import check_same_tokenizer

        if not isinstance(self.model, torch.nn.Module):
            raise UserError(f"{path}: an adapter voice needs the torch engine; this server runs an ONNX export, "
                            "whose weights are fixed: merge the adapter into a checkpoint (valle export checkpoint), "
                            "export that (valle export onnx) and serve it, or serve with --engine torch")
        weight = self.model.ar_predict_layer.weight
        if weight.dtype == torch.int8:
            raise UserError(f"{path}: an adapter voice needs a float base, and this one is int8: serve with "
                            "--precision fp32 or bf16, or merge the adapter into a checkpoint and serve that in int8")
        adapter = load_adapter(path)
        check_base(self.model, adapter.base, str(path), "the served base")
        if base_overrides(adapter.weights):
            raise UserError(f"{path}: carries base tensors trained with it (--trainable), which would change the "
                            "shared base: merge it into a checkpoint (valle export checkpoint) and serve that")
        if adapter.tokenizer is not None and self.tokenizer_info is not None:
            check_same_tokenizer(adapter.tokenizer, self.tokenizer_info, where=f"{path} vs the served base")
        lora = LoRA(self.model, adapter.spec)
        load_pairs(lora, adapter.weights, str(path))
        lora.remove()
        return lora.to(weight.dtype).eval()
