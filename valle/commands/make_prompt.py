"""Make a voice preset .npz (the released VALL-E X format) from a recording and its transcript.

The preset holds audio_tokens [1, T, 8] (Encodec 24 kHz codes), text_tokens [1, L] (the transcript's ids)
and lang_code (zh 0, ja 1, en 2). Use it with valle infer --prompt-preset; 3-10 s of clean speech works best.
"""

from __future__ import annotations

import argparse

from valle.cli import ArgumentParser, UserError
from valle.config import LANGUAGES, or_list


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", required=True, help="the recording (wav/flac/mp3/ogg; made mono 24 kHz), up to 15 s")
    p.add_argument("--text", required=True, help="what is said in the recording")
    p.add_argument("--language", default="en",
                   help=f"language of the transcript: {or_list(LANGUAGES)} [en]")
    p.add_argument("--output", default="voice.npz", help="the preset file to write [voice.npz]")
    p.add_argument("--codec-weights", default="pretrained",
                   help="Encodec 24 kHz weights: pretrained, random (tests only) or a file [pretrained]")
    p.add_argument("--checkpoint", default=None,
                   help="take the text tokenizer from this checkpoint (for models not using the released one) "
                        "[the released vallex tokenizer]")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto [auto]")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    if a.language not in LANGUAGES:
        raise UserError(f"--language {a.language!r}: a prompt has one language, one of {', '.join(LANGUAGES)}")
    if not a.output.endswith(".npz"):
        raise UserError(f"--output {a.output}: a preset is an .npz file; end the name with .npz")

    from valle.audio import load_audio
    from valle.codec import Codec
    from valle.device import resolve_device
    from valle.inference import checkpoint_tokenizer, make_prompt, save_prompt
    from valle.models.checkpoint import load_checkpoint

    wave, info = load_audio(a.audio)
    stored = load_checkpoint(a.checkpoint).tokenizer if a.checkpoint else None
    tokenizer = checkpoint_tokenizer(stored, where=a.checkpoint or "vallex")
    codec = Codec.from_weights(a.codec_weights, device=resolve_device(a.device))
    prompt = make_prompt(wave, a.text, a.language, tokenizer, codec)
    path = save_prompt(a.output, prompt)
    print(f"{path}: {prompt.seconds:.2f} s ({prompt.codes.shape[0]} frames), {len(prompt.text_ids)} text tokens, "
          f"language {a.language}; from {info.describe()}")
