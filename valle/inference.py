"""Synthesis: text (+ a voice prompt) -> codes (T, 8) -> waveform at 24 kHz.

A prompt is the released "voice preset": codes of a short recording, the ids of its transcript and its
language. Prompt text and target text are fed to the model as one sequence (prompt first), each token with
its own language; the prompt's codes continue after BOS, and only the frames generated after them are returned.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from valle.audio import SAMPLE_RATE, level_dbfs
from valle.codec import FRAME_RATE
from valle.config import ENGINES, LANGUAGE_IDS, LANGUAGES
from valle.errors import UserError
from valle.models.valle import VALLE, Sampling

if TYPE_CHECKING:
    from valle.models.checkpoint import LoadedAdapter
    from valle.onnx_engine.runtime import OnnxVALLE
    from valle.text import TextTokenizer

PRESET_LANG_CODES = {"zh": 0, "ja": 1, "en": 2}  # `lang_code` in the released preset .npz (not the model's ids)
MAX_PROMPT_SECONDS = 15.0  # the reference refuses longer prompts; the model was never trained on more
MIN_PROMPT_SECONDS = 2.0  # shorter prompts carry little of the voice (3-10 s works best)
QUIET_PROMPT_DBFS = -45.0  # a prompt this quiet is (nearly) silence
# Text tokens generated together: about 15-20 s of speech. The model was trained on utterances up to ~20 s,
# and the KV cache grows with 16 frames per token; longer text is split at sentence ends (see split_text).
MAX_TEXT_TOKENS = 250
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；…])\s+|(?<=[。！？；])")
_CLAUSE_END = re.compile(r"(?<=[,:，、：])\s*")

log = logging.getLogger("valle.inference")


@dataclass
class Prompt:
    """A voice prompt: codes (Tp, Q) long, the transcript's token ids, and its language (en|zh|ja)."""

    codes: Tensor
    text_ids: list[int]
    language: str

    @property
    def seconds(self) -> float:
        return self.codes.shape[0] / FRAME_RATE


@dataclass
class Request:
    """One text to speak: token ids, the language of each token, and an optional prompt."""

    text_ids: list[int]
    languages: list[str]
    prompt: Prompt | None = None


def load_prompt(path: str | Path) -> Prompt:
    """Read a preset .npz in the released format: audio_tokens [1, T, 8], text_tokens [1, L], lang_code."""
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise UserError(f"{path}: prompt preset not found; make one with valle make-prompt") from None
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz ({e}); make the preset again with valle make-prompt") from None
    missing = {"audio_tokens", "text_tokens", "lang_code"} - set(arrays)
    if missing:
        raise UserError(f"{path}: missing arrays {sorted(missing)}; a preset holds audio_tokens [1,T,8], "
                        "text_tokens [1,L] and lang_code (zh 0, ja 1, en 2): make it with valle make-prompt")
    audio, text, code = arrays["audio_tokens"], arrays["text_tokens"], arrays["lang_code"]
    if audio.ndim != 3 or audio.shape[0] != 1 or text.ndim != 2 or text.shape[0] != 1 or code.size != 1:
        raise UserError(f"{path}: audio_tokens {audio.shape}, text_tokens {text.shape}, lang_code {code.shape}; "
                        "expected [1,T,8], [1,L] and a scalar: make the preset again with valle make-prompt")
    languages = {v: k for k, v in PRESET_LANG_CODES.items()}
    if int(code.reshape(())) not in languages:
        raise UserError(f"{path}: lang_code {int(code.reshape(()))} is not one of zh 0, ja 1, en 2")
    return Prompt(torch.from_numpy(audio[0].astype(np.int64)), text[0].astype(np.int64).tolist(),
                  languages[int(code.reshape(()))])


def save_prompt(path: str | Path, prompt: Prompt) -> Path:
    """Write a preset .npz in the released format (readable by Plachtaa/VALL-E-X as well)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        audio_tokens=prompt.codes.cpu().numpy().astype(np.int64)[None],  # (1, T, 8)
        text_tokens=np.asarray([prompt.text_ids], dtype=np.int64),  # (1, L)
        lang_code=np.int64(PRESET_LANG_CODES[prompt.language]),
    )
    return path


def make_prompt(wave: Tensor, transcript: str, language: str, tokenizer, codec) -> Prompt:
    """A mono 24 kHz wave (T,) and its transcript -> Prompt (codes from the codec, ids from the tokenizer)."""
    if language not in PRESET_LANG_CODES:
        raise UserError(f"prompt language {language!r}: a prompt has one language, one of {', '.join(LANGUAGES)}")
    seconds = wave.shape[-1] / SAMPLE_RATE
    if seconds > MAX_PROMPT_SECONDS:
        raise UserError(f"prompt audio is {seconds:.1f} s; the model takes at most {MAX_PROMPT_SECONDS:.0f} s: "
                        "trim it (3-10 s of clean speech works best)")
    if seconds < MIN_PROMPT_SECONDS:
        log.warning("the prompt audio is only %.1f s: the voice comes through poorly; 3-10 s of clean speech "
                    "works best", seconds)
    if level_dbfs(wave) < QUIET_PROMPT_DBFS:
        log.warning("the prompt audio is nearly silent (%.0f dBFS): the model has no voice to follow; "
                    "use a recording of clear speech", level_dbfs(wave))
    codes = codec.encode([wave])[0]  # (T, 8)
    return Prompt(codes, list(tokenizer.encode(transcript, language).ids), language)


def split_text(text: str, language: str, tokenizer, max_tokens: int = MAX_TEXT_TOKENS,
               pack: bool = True) -> list[str]:
    """`text` as pieces of at most `max_tokens` tokens each: whole sentences packed together (with `pack` False,
    one sentence per piece), a sentence longer than that split at its commas. A clause that still does not fit
    is a UserError."""
    def size(piece: str) -> int:
        return len(tokenizer.encode(piece, language).ids)

    if (pack or language == "mix") and size(text) <= max_tokens:
        return [text]
    if language == "mix":
        raise UserError(f"the text has {size(text)} tokens; mixed-language text is generated in one piece of at "
                        f"most {max_tokens}: split it into several lines")
    pieces: list[str] = []
    gap = "" if language in ("zh", "ja") else " "
    for sentence in filter(str.strip, _SENTENCE_END.split(text.strip())):
        parts = [sentence] if size(sentence) <= max_tokens else list(filter(str.strip, _CLAUSE_END.split(sentence)))
        for part in parts:
            if size(part) > max_tokens:
                raise UserError(f"{part[:60]!r}... has {size(part)} tokens with no sentence end or comma to split "
                                f"at; one generation takes at most {max_tokens} (about 15 s): add punctuation")
            joined = f"{pieces[-1]}{gap}{part}" if pieces else part
            if pack and pieces and size(joined) <= max_tokens:
                pieces[-1] = joined
            else:
                pieces.append(part)
    return pieces


def check_prompt(prompt: Prompt, model: VALLE, where: str = "prompt") -> None:
    """Refuse a prompt the model cannot take: too long, wrong number of codebooks, ids out of range."""
    c = model.config
    if prompt.codes.ndim != 2 or prompt.codes.shape[1] != c.num_quantizers:
        raise UserError(f"{where}: codes of shape {tuple(prompt.codes.shape)}; expected (frames, {c.num_quantizers})")
    if prompt.seconds > MAX_PROMPT_SECONDS:
        raise UserError(f"{where}: {prompt.seconds:.1f} s ({prompt.codes.shape[0]} frames) is longer than the "
                        f"{MAX_PROMPT_SECONDS:.0f} s the model takes; make a shorter prompt")
    if prompt.codes.numel() and not 0 <= int(prompt.codes.min()) <= int(prompt.codes.max()) < c.audio_vocab_size:
        raise UserError(f"{where}: codes outside 0..{c.audio_vocab_size - 1}; it was not made by Encodec 24 kHz")
    if not prompt.text_ids:
        raise UserError(f"{where}: no transcript tokens; a prompt needs the text spoken in it")
    if prompt.language not in PRESET_LANG_CODES:
        raise UserError(f"{where}: language {prompt.language!r}; use one of {', '.join(LANGUAGES)}")


def model_inputs(model: VALLE, r: Request) -> tuple[Tensor, Tensor, Tensor, int]:
    """One request as VALLE.generate takes it: text ids (L,) (prompt text first), their language ids (L,),
    prompt codes (Tp, Q) (Tp may be 0) and how many of the ids are the prompt's."""
    device = model.device
    p = r.prompt
    if p is not None:
        check_prompt(p, model)
    if len(r.languages) != len(r.text_ids):
        raise ValueError(f"{len(r.text_ids)} text ids but {len(r.languages)} languages")
    ids = (p.text_ids if p else []) + list(r.text_ids)
    if not r.text_ids or max(ids) >= model.config.text_vocab_size:
        raise UserError(f"text ids {r.text_ids[:10]}...: empty or beyond the model's "
                        f"{model.config.text_vocab_size} text tokens; was the text tokenized for this model?")
    names = ([p.language] * len(p.text_ids) if p else []) + list(r.languages)
    ids, names = model.config.frame_text(ids, names)  # prompt and target text are one utterance, as in training
    codes = p.codes if p is not None else torch.zeros(0, model.config.num_quantizers, dtype=torch.long)
    has_bos = model.config.text_bos_id >= 0
    return (torch.tensor(ids, device=device), torch.tensor([LANGUAGE_IDS[n] for n in names], device=device),
            codes.to(device=device, dtype=torch.long), len(p.text_ids) + has_bos if p else 0)


def generate(model: VALLE, requests: list[Request], sampling: Sampling = Sampling(), use_cache: bool = True,
             decode_mode: str = "eager") -> list[Tensor]:
    """Codes (T_i, Q) of the frames generated for each request, all in one batch.

    Stops at EOS or after `sampling.max_frames` (default: 16 per text token, prompt text included, as the
    reference). Greedy (top_k=1) gives the same codes whether requests run together or one by one.
    decode_mode: "eager", "cudagraph" (CUDA) or "inductor": how the AR steps run (valle.models.decoding).
    """
    text, langs, prompts, prompt_lens = zip(*(model_inputs(model, r) for r in requests))
    return model.generate(list(text), list(langs), list(prompts), list(prompt_lens), sampling=sampling,
                          use_cache=use_cache, decode_mode=decode_mode)


class Synthesizer:
    """(model, tokenizer, codec[, decoder]) -> `synthesize(text, language, prompt, sampling) -> (codes, wave)`.

    `decoder` turns codes into audio (default: the codec's own decoder; a VocosDecoder also fits).
    `decode_mode` is how the AR steps run (see `generate`). The tokenizer may be None for `render` alone.
    """

    def __init__(self, model: VALLE, tokenizer, codec, decoder=None, decode_mode: str = "eager"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.codec = codec
        self.decoder = decoder or codec
        self.decode_mode = decode_mode

    def request(self, text: str, language: str, prompt: Prompt | None = None) -> Request:
        tok = self.tokenizer.encode(text, language)
        return Request(list(tok.ids), list(tok.languages), prompt)

    def prompt_from_audio(self, wave: Tensor, transcript: str, language: str) -> Prompt:
        return make_prompt(wave, transcript, language, self.tokenizer, self.codec)

    def synthesize(self, text: str, language: str, prompt: Prompt | None = None,
                   sampling: Sampling = Sampling()) -> tuple[Tensor, Tensor]:
        """-> codes (T, 8) of the generated frames and the waveform (T * 320,) at 24 kHz."""
        return self.synthesize_batch([(text, language)], prompt, sampling)[0]

    def synthesize_batch(self, items: list[tuple[str, str]], prompt: Prompt | None = None,
                         sampling: Sampling = Sampling()) -> list[tuple[Tensor, Tensor]]:
        """Several (text, language) pairs in one batch, all with the same prompt (or none)."""
        return self.render([self.request(text, language, prompt) for text, language in items], sampling)

    def render(self, requests: list[Request], sampling: Sampling = Sampling()) -> list[tuple[Tensor, Tensor]]:
        """Generate a batch of requests and decode each: [(codes (T, 8), wave (T * 320,))]."""
        codes = generate(self.model, requests, sampling, decode_mode=self.decode_mode)
        return [(c.cpu(), self.decoder.decode(c) if len(c) else torch.zeros(0)) for c in codes]


# ---- loading a model to speak ------------------------------------------------------------------

@dataclass
class SpeakingModel:
    """A model ready to speak: its weights (adapters merged) on `device` in `precision` (valle.models.precision),
    in eval mode, its activations in `dtype`, and the text tokenizer it was trained with."""

    model: VALLE | OnnxVALLE
    tokenizer: TextTokenizer
    device: str
    precision: str
    dtype: torch.dtype


def load_for_inference(checkpoint: str | Path, adapters: Sequence[str | Path] = (), device: str = "auto",
                       precision: str = "fp32", nhead: int | None = None, engine: str = "torch",
                       onnx: str | Path | None = None) -> SpeakingModel:
    """The one way to get a model that speaks: the checkpoint (a file, or "vallex" for the released one) built and
    loaded strictly on `device` ("auto": a GPU when there is one), the adapter files (at most one per half,
    each checked against the checkpoint) merged into its weights, then put in `precision` (fp32, bf16, fp16, or
    int8: weight-only int8 linears on the CPU), with the tokenizer of `checkpoint_tokenizer`. `nhead`: attention
    heads for a file that does not store them (the released one).

    engine "onnxruntime": the model runs from the folder `onnx` (written by `valle export onnx` from this
    checkpoint and these adapters, checked by digest) with ONNX Runtime on the CPU, at the folder's precision
    (`precision` must be fp32, the default: the folder's own precision is what runs)."""
    from valle.device import resolve_device
    from valle.models.precision import apply_precision, check_precision

    check_engine(engine, onnx, device, precision)
    device = resolve_device(device) if engine == "torch" else "cpu"
    dtype = check_precision(precision, device)
    model, loaded, merged = load_merged(checkpoint, adapters, nhead, device)
    tokenizer = checkpoint_tokenizer(loaded.tokenizer, merged, where=str(checkpoint))
    if engine == "onnxruntime":
        from valle.onnx_engine.export import model_digest
        from valle.onnx_engine.runtime import OnnxVALLE

        model = OnnxVALLE.load(onnx, digest=model_digest(model))
        return SpeakingModel(model, tokenizer, device, model.precision, torch.float32)
    apply_precision(model, precision)  # after merging: generation then runs at the full model's speed
    return SpeakingModel(model.eval(), tokenizer, device, precision, dtype)


def load_merged(checkpoint: str | Path, adapters: Sequence[str | Path], nhead: int | None, device: str):
    """The checkpoint's model on `device` with the adapter files merged -> (model, the loaded checkpoint, the merged
    adapters)."""
    from valle.models.checkpoint import load_model, merge_adapter_files

    model, loaded = load_model(checkpoint, nhead=nhead, device=device)
    merged = merge_adapter_files(model, adapters, base_name=str(checkpoint)) if adapters else []
    return model, loaded, merged


def check_export(checkpoint: str | Path, adapters: Sequence[str | Path], onnx: str | Path,
                 nhead: int | None = None) -> None:
    """Refuse the folder `onnx` in one line unless it is the export of `checkpoint` with `adapters` merged, before
    anything else runs (load_for_inference checks it again when it loads)."""
    from valle.onnx_engine.export import model_digest
    from valle.onnx_engine.runtime import check_digest, read_manifest

    check_digest(onnx, read_manifest(onnx), model_digest(load_merged(checkpoint, adapters, nhead, "cpu")[0]))


def check_engine(engine: str, onnx: str | Path | None, device: str = "auto", precision: str = "fp32") -> None:
    """Refuse an engine that cannot run as asked, before anything loads: an unknown name, ONNX Runtime without its
    package, its folder, on a GPU or with a --precision (its folder's is what runs), a folder given to the torch
    engine."""
    if engine not in ENGINES:
        raise UserError(f"--engine {engine}: use one of {', '.join(ENGINES)}")
    if engine == "torch":
        if onnx is not None:
            raise UserError("--onnx is for --engine onnxruntime; the torch engine runs the checkpoint itself")
        return
    if precision != "fp32":
        raise UserError(f"--precision {precision} is for the torch engine: the ONNX engine runs the precision its "
                        "folder was exported in (export again with `valle export onnx --precision` to change it)")
    from valle.onnx_engine.runtime import read_manifest, require

    require("onnxruntime")
    if onnx is None:
        raise UserError("--engine onnxruntime needs --onnx DIR, the folder written by "
                        "`python -m valle export onnx --checkpoint ... --output DIR`")
    read_manifest(onnx)
    if device not in ("auto", "cpu"):
        raise UserError(f"--engine onnxruntime runs on the CPU, not --device {device}: use --device cpu")


def checkpoint_tokenizer(stored: dict | None, adapters: Sequence[tuple[str, LoadedAdapter]] = (),
                         where: str = "--checkpoint") -> TextTokenizer:
    """The text tokenizer a checkpoint speaks with: the one stored in it; a file that stores none (the released
    checkpoint) speaks with the released `vallex` tokenizer. Adapter files that carry a tokenizer must agree."""
    from valle.text import check_same_tokenizer, get_tokenizer, tokenizer_from_info

    info = stored or get_tokenizer("vallex").to_dict()
    for path, adapter in adapters:
        if adapter.tokenizer is not None:
            check_same_tokenizer(adapter.tokenizer, info, where=f"{path} vs {where}")
    return tokenizer_from_info(info, where=where)
