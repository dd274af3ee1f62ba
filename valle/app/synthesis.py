"""The Synthesize tab: a checkpoint, a text and an optional voice prompt -> a wav and its codes.

The same steps as valle infer and valle make-prompt (load_for_inference, Codec, Synthesizer,
load_prompt/make_prompt/save_prompt, Sampling's checks). The last model and codec stay loaded between clicks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from valle.app.workspace import Workspace, safe_name
from valle.audio import SAMPLE_RATE
from valle.codec import FRAME_RATE
from valle.config import Sampling, SpeechOptions
from valle.errors import UserError

PRESET_DIR = "presets"
OUTPUT_DIR = "synth"


@dataclass
class SynthOptions:
    """The Synthesize tab's fields; the defaults and checks of what they share with `valle infer` are
    SpeechOptions' and Sampling's (see `speech`)."""

    checkpoint: str  # vallex | a checkpoint in the workspace
    text: str
    language: str = SpeechOptions.language  # one of INPUT_LANGUAGES: en | zh | ja | mix
    prompt: str = "none"  # none | preset | recording
    preset: str = ""  # a .npz in the workspace
    prompt_audio: str | None = None  # an uploaded or recorded file (Gradio's temporary path)
    prompt_text: str = ""
    prompt_language: str = "en"  # the page always shows one
    top_k: int = Sampling.top_k
    top_p: float = Sampling.top_p
    temperature: float = Sampling.temperature
    seed: int = SpeechOptions.sampling.seed
    max_frames: int = 0  # 0: the model's default limit
    codec_weights: str = SpeechOptions.codec_weights  # pretrained | random | a file in the workspace
    adapters: list[str] = field(default_factory=list)  # LoRA adapter files of the checkpoint (one per half)
    precision: str = "fp32"  # fp32 | bf16 | fp16 | int8 (valle.models.precision)

    def speech(self) -> SpeechOptions:
        """What these fields ask for, checked as `valle infer`'s flags are."""
        sampling = Sampling(self.top_k, self.top_p, self.temperature, seed=self.seed,
                            max_frames=self.max_frames or None)
        return SpeechOptions(self.language, self.prompt_language, sampling, self.codec_weights)


class Synthesis:
    def __init__(self, ws: Workspace, device: str = "auto"):
        from valle.device import resolve_device

        self.ws, self.device = ws, resolve_device(device)
        self._model: tuple | None = None  # (key, model, tokenizer)
        self._codec: tuple | None = None  # (spec, codec)

    def checkpoint_path(self, checkpoint: str) -> str:
        checkpoint = checkpoint.strip()
        if not checkpoint:
            raise UserError("checkpoint: pick one (a .pt in the workspace, or vallex for the released model)")
        return checkpoint if checkpoint == "vallex" else str(self.ws.path(checkpoint, "checkpoint", must_exist=True))

    def model(self, checkpoint: str, adapters: list[str] = (), precision: str = "fp32"):
        """(model, tokenizer) of a checkpoint with its adapters merged in (as valle infer --adapter), in
        `precision` (as --precision), kept loaded while the files and the precision are unchanged."""
        from valle.inference import load_for_inference

        path = self.checkpoint_path(checkpoint)
        files = [str(self.ws.path(a, "adapter", must_exist=True)) for a in adapters or ()]
        key = (precision, *((f, Path(f).stat().st_mtime_ns if f != "vallex" else 0) for f in [path, *files]))
        if self._model is None or self._model[0] != key:
            self._model = None  # free the old one first
            speaking = load_for_inference(path, files, device=self.device, precision=precision)
            self._model = (key, speaking.model, speaking.tokenizer)
        return self._model[1], self._model[2]

    def codec(self, weights: str):
        from valle.codec import Codec

        spec = weights.strip()
        if spec not in ("pretrained", "random"):
            spec = str(self.ws.path(spec, "codec weights", must_exist=True))
        if self._codec is None or self._codec[0] != spec:
            self._codec = (spec, Codec.from_weights(spec, device=self.device))
        return self._codec[1]

    def prompt(self, o: SynthOptions, tokenizer, codec):
        """The voice prompt the options ask for (None: no prompt)."""
        from valle.audio import load_audio
        from valle.inference import load_prompt, make_prompt

        if o.prompt == "none":
            return None
        if o.prompt == "preset":
            if not o.preset:
                raise UserError("voice prompt: pick a preset (or choose no prompt)")
            return load_prompt(self.ws.path(o.preset, "preset", must_exist=True))
        if not o.prompt_audio:
            raise UserError("voice prompt: upload or record the voice first")
        if not o.prompt_text.strip():
            raise UserError("voice prompt: type what is said in the recording (its transcript)")
        wave, _ = load_audio(o.prompt_audio)
        return make_prompt(wave, o.prompt_text.strip(), o.prompt_language, tokenizer, codec)

    def synthesize(self, o: SynthOptions) -> tuple[Path, Path, str]:
        """-> (wav, codes .npy, a one-line description); both files are kept under the workspace's synth/."""
        from valle.inference import Synthesizer, check_prompt
        from valle.text import TextError

        sampling = check_options(o).sampling
        model, tokenizer = self.model(o.checkpoint, o.adapters, o.precision)
        codec = self.codec(o.codec_weights)
        prompt = self.prompt(o, tokenizer, codec)
        if prompt is not None:
            check_prompt(prompt, model)
        synth = Synthesizer(model, tokenizer, codec)
        try:
            request = synth.request(o.text.strip(), o.language, prompt)
        except TextError as e:
            raise UserError(f"text: {e}; check the text and that its language is right") from None
        start = time.perf_counter()
        with torch.inference_mode():
            codes, wave = synth.render([request], sampling)[0]  # (T, 8), (T * 320,)
        out_dir = self.ws.path(OUTPUT_DIR, "output folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = time.strftime("%Y%m%d-%H%M%S") + f"-seed{o.seed}"
        wav, npy = out_dir / f"{stem}.wav", out_dir / f"{stem}.npy"
        sf.write(str(wav), wave.numpy(), SAMPLE_RATE)
        np.save(npy, codes.numpy().astype(np.int64))
        note = "" if len(codes) else " (the model stopped at once: no frames)"
        return wav, npy, (f"{self.ws.relative(wav)}: {len(codes) / FRAME_RATE:.2f} s, {len(codes)} frames in "
                          f"{time.perf_counter() - start:.1f} s{note}")

    def save_preset(self, o: SynthOptions, name: str) -> str:
        """Make the recording + transcript of the options into presets/<name>.npz (released format)."""
        from valle.inference import save_prompt

        if o.prompt != "recording":
            raise UserError("save as preset: choose 'recording' as the voice prompt, upload or record it and "
                            "type its transcript")
        name = safe_name(name.strip() or "voice")
        name = name if name.endswith(".npz") else name + ".npz"
        _, tokenizer = self.model(o.checkpoint, o.adapters, o.precision)
        prompt = self.prompt(o, tokenizer, self.codec(o.codec_weights))
        path = save_prompt(self.ws.path(Path(PRESET_DIR) / name, "preset"), prompt)
        return (f"saved {self.ws.relative(path)}: {prompt.seconds:.2f} s, {len(prompt.text_ids)} text tokens, "
                f"language {prompt.language}")


def check_options(o: SynthOptions) -> SpeechOptions:
    """The text and the prompt choice of the page; -> what the rest asks for (it checks itself)."""
    if not o.text.strip():
        raise UserError("text: empty; type the sentence to speak")
    if o.prompt not in ("none", "preset", "recording"):
        raise UserError(f"voice prompt {o.prompt!r}: use none, preset or recording")
    return o.speech()
