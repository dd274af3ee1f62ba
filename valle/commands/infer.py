"""Speak text with VALL-E X: one sentence (--text) or a list (--input list.tsv --output-dir DIR).

The list is UTF-8 text, one utterance per line: name<TAB>language<TAB>text (empty lines and lines
starting with # are skipped); DIR/name.wav and DIR/name.npy (the codes) are written for each line.
Without --prompt-* the model speaks with no voice prompt, as the reference does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from valle.cli import (
    ArgumentParser,
    UserError,
    add_model_arguments,
    add_sampling_arguments,
    sampling_from_args,
)
from valle.config import LANGUAGES, SpeechOptions, check_language, or_list

_DEFAULT = SpeechOptions()

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")  # what soundfile writes, chosen by the extension
DECODE_MODE = {"none": "eager", "cudagraph": "cudagraph", "inductor": "inductor"}  # --compile -> generate()


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m = add_model_arguments(p, "checkpoint file, or 'vallex' for the released one (cached, downloaded once) [vallex]")
    m.add_argument("--adapter", nargs="+", default=None, metavar="FILE",
                   help="adapter files of --checkpoint (at most one per half, e.g. exp/ar/best-valid-loss.pt "
                        "exp/nar/best-valid-loss.pt), merged into the weights once at load")
    m.add_argument("--compile", choices=("none", "cudagraph", "inductor"), default="none",
                   help="AR decoding step: none (eager), cudagraph (captured once as a CUDA graph and replayed; "
                        "CUDA only), inductor (torch.compile: slow first call; needs a C++ compiler on CPU, "
                        "captured as a CUDA graph on GPUs) [none]")
    t = p.add_argument_group("text")
    t.add_argument("--text", help="the sentence to speak")
    t.add_argument("--language", default=_DEFAULT.language,
                   help=f"language of --text: {', '.join(LANGUAGES)}, or mix (parts marked [EN]..[EN][ZH]..[ZH]) "
                        f"[{_DEFAULT.language}]")
    t.add_argument("--input", help="batch mode: a .tsv of name<TAB>language<TAB>text lines")
    t.add_argument("--output-dir", help="batch mode: folder for name.wav and name.npy")
    t.add_argument("--batch-size", type=int, default=8, help="batch mode: sentences generated together [8]")
    v = p.add_argument_group("voice prompt (optional)")
    v.add_argument("--prompt-preset", help="a voice preset .npz (released format; see valle make-prompt)")
    v.add_argument("--prompt-audio", help="a recording of the voice (up to 15 s); needs --prompt-text")
    v.add_argument("--prompt-text", help="the transcript of --prompt-audio")
    v.add_argument("--prompt-language", default=None,
                   help=f"language of --prompt-text: {or_list(LANGUAGES)} [--language, or en when it is mix]")
    add_sampling_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--output", default="out.wav", help="the wav file for --text [out.wav]")
    o.add_argument("--save-codes", default=None, help="also save the generated codes as an int .npy [T, 8]")
    o.add_argument("--codec-weights", default=_DEFAULT.codec_weights,
                   help=f"Encodec 24 kHz weights: pretrained, random (tests only: noise) or a file "
                        f"[{_DEFAULT.codec_weights}]")
    o.add_argument("--decoder", choices=("encodec", "vocos"), default="encodec",
                   help="turn codes into audio with Encodec's decoder or with Vocos (package vocos) [encodec]")
    o.add_argument("--vocos-weights", default="pretrained",
                   help="with --decoder vocos: pretrained, or a folder with config.yaml and pytorch_model.bin")
    return p


def read_list(path: str) -> list[tuple[str, str, str]]:
    """name<TAB>language<TAB>text lines -> [(name, language, text)]."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"--input {path}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"--input {path}: not UTF-8 text; save it as UTF-8") from None
    items, seen = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise UserError(f"{path}:{n}: {len(fields)} tab-separated fields; expected name<TAB>language<TAB>text")
        name, language, text = (f.strip() for f in fields)
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise UserError(f"{path}:{n}: name {name!r} cannot be a file name; use letters, digits, - and _")
        if name in seen:
            raise UserError(f"{path}:{n}: name {name!r} appears twice; names must be unique")
        seen.add(name)
        items.append((name, check_language(language, f"{path}:{n}"), text))
    if not items:
        raise UserError(f"--input {path}: no lines of name<TAB>language<TAB>text")
    return items


def check_args(a: argparse.Namespace) -> SpeechOptions:
    """Every check of the flags alone, before anything loads; -> the options they ask for."""
    if (a.text is None) == (a.input is None):
        raise UserError("give either --text TEXT or --input LIST.tsv (with --output-dir DIR)")
    if a.input is not None and not a.output_dir:
        raise UserError("--input needs --output-dir DIR for the wav files")
    if a.prompt_preset and (a.prompt_audio or a.prompt_text):
        raise UserError("give either --prompt-preset NPZ or --prompt-audio WAV --prompt-text TEXT, not both")
    if bool(a.prompt_audio) != bool(a.prompt_text):
        raise UserError("--prompt-audio and --prompt-text go together: the recording and what is said in it")
    options = SpeechOptions(a.language, a.prompt_language, sampling_from_args(a), a.codec_weights)
    from valle.inference import check_engine

    check_engine(a.engine, a.onnx, a.device, a.precision)
    if a.engine == "onnxruntime" and a.compile != "none":
        raise UserError("--compile is for the torch engine; --engine onnxruntime runs its files as exported")
    if a.batch_size < 1:
        raise UserError(f"--batch-size {a.batch_size}: must be at least 1")
    if a.text is not None:
        check_output_file(a.output, "--output", AUDIO_SUFFIXES)
        if a.save_codes:
            check_output_file(a.save_codes, "--save-codes", (".npy",))
    else:
        check_output_dir(a.output_dir)
    return options


def _check_writable_parent(path: Path, flag: str) -> None:
    """Create (and remove) a file in the nearest existing folder: permission bits say nothing for root, nor
    for folders such as /proc."""
    parent = next(p for p in path.absolute().parents if p.exists())  # the folder that exists (or will hold it)
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write in {parent} ({(e.strerror or str(e)).lower()}); "
                        "choose another place") from None


def check_output_file(value: str, flag: str, suffixes: tuple[str, ...]) -> None:
    """Refuse an output path that could not be written, before any synthesis."""
    path = Path(value)
    if path.is_dir() or value.endswith(("/", os.sep)):
        raise UserError(f"{flag} {value}: is a folder; give a file name such as {path / ('out' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {value}: the file name must end in {' or '.join(suffixes)}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {value}: the file exists and cannot be overwritten (permission denied)")
    _check_writable_parent(path, flag)


def check_output_dir(value: str) -> None:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {value}: is a file; give a folder for the wav files")
    _check_writable_parent(path / "x", "--output-dir")


def encode_texts(items: list[tuple[str, str, str]], tokenizer, where: str) -> tuple[list, list[int]]:
    """Tokenize every text before any audio is made, so that a bad line stops the run at once. A long text
    becomes several requests (its sentences, see split_text): -> (requests, index of the item of each)."""
    from valle.inference import MAX_TEXT_TOKENS, Request, split_text
    from valle.text import TextError

    requests, owners = [], []
    for i, (name, language, text) in enumerate(items):
        place = f"{where} line {name!r}" if name else where
        if not text.strip():
            raise UserError(f"{place}: the text is empty; give the sentence to speak")
        try:
            whole = tokenizer.encode(text, language)
            pieces = [text] if len(whole.ids) <= MAX_TEXT_TOKENS else split_text(text, language, tokenizer)
            toks = [whole] if len(pieces) == 1 else [tokenizer.encode(piece, language) for piece in pieces]
        except UserError as e:
            hint = "; check the text and that its language is right" if isinstance(e, TextError) else ""
            raise UserError(f"{place}: {e}{hint}") from None
        if len(pieces) > 1:
            print(f"{place}: long text, generated as {len(pieces)} pieces of up to a few sentences each")
        requests += [Request(list(tok.ids), list(tok.languages)) for tok in toks]
        owners += [i] * len(pieces)
    return requests, owners


def audio_prompt(a: argparse.Namespace, language: str, tokenizer, codec):
    """The prompt made from --prompt-audio and --prompt-text (in `language`)."""
    from valle.audio import load_audio
    from valle.inference import make_prompt

    wave, _ = load_audio(a.prompt_audio)
    return make_prompt(wave, a.prompt_text, language, tokenizer, codec)


def save(wave_path: Path, codes_path: Path | None, codes, wave) -> None:
    import numpy as np
    import soundfile as sf

    from valle.audio import SAMPLE_RATE
    from valle.codec import FRAME_RATE

    wave_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wave_path), wave.numpy(), SAMPLE_RATE)
    if codes_path is not None:
        codes_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(codes_path, codes.numpy().astype(np.int64))
    note = "" if len(codes) else " (the model stopped at once: no frames)"
    print(f"{wave_path}: {len(codes) / FRAME_RATE:.2f} s, {len(codes)} frames{note}")


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    options = check_args(a)
    items = [("", options.language, a.text)] if a.text is not None else read_list(a.input)

    import dataclasses

    import torch
    from tqdm import tqdm

    from valle.codec import Codec
    from valle.device import resolve_device
    from valle.inference import Synthesizer, check_prompt, load_for_inference, load_prompt
    from valle.vocoder import VocosDecoder

    device = "cpu" if a.engine == "onnxruntime" else resolve_device(a.device)
    if a.compile == "cudagraph" and not device.startswith("cuda"):
        raise UserError(f"--compile cudagraph needs a CUDA device, not {device}: use --compile none or inductor")
    speaking = load_for_inference(a.checkpoint, a.adapter or (), device=device, precision=a.precision, nhead=a.nhead,
                                  engine=a.engine, onnx=a.onnx)
    model, tokenizer = speaking.model, speaking.tokenizer
    requests, owners = encode_texts(items, tokenizer, a.input or "--text")
    prompt = load_prompt(a.prompt_preset) if a.prompt_preset else None  # checked before the codec loads
    if prompt is not None:
        check_prompt(prompt, model, where=a.prompt_preset)
    codec = Codec.from_weights(options.codec_weights, device=device)
    if a.prompt_audio:
        prompt = audio_prompt(a, options.transcript_language, tokenizer, codec)
        check_prompt(prompt, model, where=a.prompt_audio)
    requests = [dataclasses.replace(r, prompt=prompt) for r in requests]
    decoder = VocosDecoder.from_weights(a.vocos_weights, device=device) if a.decoder == "vocos" else codec
    synth = Synthesizer(model, tokenizer, codec, decoder, decode_mode=DECODE_MODE[a.compile])
    batches = range(0, len(requests), a.batch_size)
    pieces = []  # (codes, wave) of the requests of the item being finished
    for b, start in enumerate(tqdm(batches, desc="batches", disable=len(batches) < 2)):
        with torch.inference_mode():
            results = synth.render(requests[start : start + a.batch_size], options.sampling.for_batch(b))
        for n, result in enumerate(results, start):
            pieces.append(result)
            if n + 1 < len(owners) and owners[n + 1] == owners[n]:
                continue  # more pieces of this text to come
            codes, wave = (torch.cat(parts) for parts in zip(*pieces))  # the pieces in order: (T, 8), (T * 320,)
            pieces = []
            name = items[owners[n]][0]
            if a.text is not None:
                save(Path(a.output), Path(a.save_codes) if a.save_codes else None, codes, wave)
            else:
                save(Path(a.output_dir) / f"{name}.wav", Path(a.output_dir) / f"{name}.npy", codes, wave)
