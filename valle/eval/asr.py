"""Intelligibility: transcribe with an ASR backend, normalise, score WER (en) or CER (zh, ja) with jiwer.

Backends (`Transcriber`): Whisper through `faster-whisper` or `openai-whisper` (optional extra `asr`; the
model is downloaded on first use), `Pocketsphinx` (English; its model ships inside the `pocketsphinx` wheel, so
it works offline; much less accurate than Whisper), or `TranscriptFile`: transcripts made elsewhere, read from a
`name<TAB>text` file (name = the wav's path under the report folder, e.g. `ar-best-valid-loss/utt1.wav`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from valle.errors import UserError

ASR_RATE = 16000  # Whisper's input rate
CHARACTER_LANGUAGES = ("zh", "ja")  # scored per character (CER); others per word (WER)
_PUNCTUATION = re.compile(r"[^\w\s']|_")  # everything but letters, digits, spaces and apostrophes


def normalize_text(text: str, language: str) -> str:
    """Text as scored: NFKC, numbers in words (en) or characters (zh), lower case, no punctuation,
    single spaces; for zh/ja no spaces at all (scored per character)."""
    text = unicodedata.normalize("NFKC", text)
    if language == "en":
        from valle.text.g2p_en import normalize_numbers

        text = normalize_numbers(text).replace("-", " ")
    elif language == "zh":
        import cn2an

        text = cn2an.transform(text, "an2cn")
    text = _PUNCTUATION.sub(" ", text.lower())
    text = " ".join(w.strip("'") for w in text.split())
    return re.sub(r"\s+", "", text) if language in CHARACTER_LANGUAGES else " ".join(text.split())


def error_counts(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(errors, reference length) in words (en) or characters (zh, ja), after `normalize_text`."""
    import jiwer

    ref, hyp = normalize_text(reference, language), normalize_text(hypothesis, language)
    units = list(ref) if language in CHARACTER_LANGUAGES else ref.split()
    if not units:
        raise UserError(f"reference text {reference!r} is empty after normalisation: nothing to score")
    if not hyp:
        return len(units), len(units)  # everything deleted
    out = (jiwer.process_characters if language in CHARACTER_LANGUAGES else jiwer.process_words)(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(units)


def error_rate(references: list[str], hypotheses: list[str], language: str) -> float:
    """Corpus-level rate: all errors / all reference units (not a mean of per-utterance rates)."""
    counts = [error_counts(r, h, language) for r, h in zip(references, hypotheses)]
    total = sum(n for _, n in counts)
    return sum(e for e, _ in counts) / total if total else math.nan


@dataclass
class Word:
    """A recognised word and where it is, in seconds from the start of the waveform given."""

    start: float
    end: float
    text: str
    probability: float  # the backend's confidence in [0, 1]


class Transcriber(ABC):
    """Shared by the evaluation (`transcribe`: text only) and the segmenter (`words`: with timings)."""

    name: str
    min_confidence = 0.0  # the segmenter's default --min-confidence: this engine's word probabilities under it are
    # flagged low_confidence (each engine's own scale: pocketsphinx's posteriors run far lower than Whisper's)

    @abstractmethod
    def transcribe(self, wave: torch.Tensor, sample_rate: int, language: str, key: str) -> str:
        """Transcribe a waveform (T,); `key` names the wav in the report folder (used by TranscriptFile)."""

    def words(self, wave: torch.Tensor, sample_rate: int, language: str) -> list[Word]:
        """The words of a waveform (T,) with their timings; language "auto" lets the backend detect it."""
        raise UserError(f"{self.name} gives no word timings: use --transcribe whisper or pocketsphinx")


class TranscriptFile(Transcriber):
    """Transcripts produced elsewhere (another machine, a human, an ASR service), not by a model here."""

    name = "transcript-file"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UserError(f"--asr-transcripts {path}: no such file") from None
        self.texts = {}
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise UserError(f"{path}:{n}: expected name<TAB>transcript")
            key, text = line.split("\t", 1)
            self.texts[key.strip()] = text.strip()

    def transcribe(self, wave, sample_rate, language, key):
        if key not in self.texts:
            raise UserError(f"{self.path}: no transcript for {key}; add a line `{key}<TAB>text`")
        return self.texts[key]


def _to_asr_rate(wave: torch.Tensor, sample_rate: int) -> np.ndarray:
    wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
    return torchaudio.functional.resample(wave, sample_rate, ASR_RATE).numpy()  # (T',) at 16 kHz


class FasterWhisper(Transcriber):
    name = "faster-whisper"
    min_confidence = 0.5

    def __init__(self, model: str, device: str):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(model, device=device, compute_type="float16" if device == "cuda" else "int8")

    def transcribe(self, wave, sample_rate, language, key):
        segments, _ = self.model.transcribe(_to_asr_rate(wave, sample_rate), language=language, beam_size=5)
        return " ".join(s.text.strip() for s in segments)

    def words(self, wave, sample_rate, language):
        segments, _ = self.model.transcribe(_to_asr_rate(wave, sample_rate), beam_size=5, word_timestamps=True,
                                            language=None if language == "auto" else language)
        return [Word(w.start, w.end, w.word.strip(), w.probability) for s in segments for w in s.words]


def _pocketsphinx_words(decoder, wave: torch.Tensor, sample_rate: int) -> list | None:
    """Run `decoder` (its search as set) over a waveform (T,): the segments of its best path that are words
    (not <s> </s> <sil> [NOISE] +fillers+), or None when no path reaches the end."""
    pcm = (np.clip(_to_asr_rate(wave, sample_rate), -1, 1) * 32767).astype(np.int16).tobytes()  # 16-bit at 16 kHz
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        return None
    return [s for s in decoder.seg() if not s.word.startswith(("<", "[", "+"))]


class Pocketsphinx(Transcriber):
    """CMU PocketSphinx with the US English model inside its wheel: offline, English only, word timings from
    its best path, each word's posterior probability as its confidence."""

    name = "pocketsphinx"
    min_confidence = 0.1  # measured on clean espeak-ng sentences of 3 voices: 0.08-0.72, median 0.39
    _FRAME_SECONDS = 0.01

    def __init__(self, model: str = "pocketsphinx", device: str = "cpu"):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=ASR_RATE, bestpath=True, loglevel="FATAL")

    def words(self, wave, sample_rate, language):
        if language not in ("en", "auto"):
            raise UserError(f"pocketsphinx transcribes English only, not {language!r}: use --transcribe whisper")
        return [Word(s.start_frame * self._FRAME_SECONDS, (s.end_frame + 1) * self._FRAME_SECONDS,
                     s.word.split("(")[0], float(s.prob))
                for s in _pocketsphinx_words(self.decoder, wave, sample_rate) or []]

    def transcribe(self, wave, sample_rate, language, key):
        return " ".join(w.text for w in self.words(wave, sample_rate, language))


class PocketsphinxAligner:
    """Forced alignment of a transcript to its audio with pocketsphinx's US English model: how well each of these
    words explains its stretch of the sound. Recognition with that model fails on voices unlike its training
    speech (synthetic ones: WER about 1), but the words' alignment costs still tell a transcript that was said from
    one that was not (bench/check_data.py)."""

    name = "pocketsphinx alignment"
    # beams so wide that every transcript finds a path (with 1e-150, 3 of 20 clean files of an en-gb voice found
    # none); the search then costs about 1/45 of the audio's duration in CPU time
    _BEAMS = {"beam": 1e-300, "pbeam": 1e-300, "wbeam": 1e-300}

    def __init__(self):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=ASR_RATE, bestpath=False, loglevel="FATAL", **self._BEAMS)

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` (as normalized for English) that pocketsphinx's dictionary does not have."""
        return [w for w in normalize_text(text, "en").split() if self.decoder.lookup_word(w) is None]

    def word_costs(self, wave: torch.Tensor, sample_rate: int, text: str) -> list[float] | None:
        """Per word of `text`, in order: how far its aligned stretch falls below the best-scoring sound of each
        10 ms frame, per frame (natural log; lower fits better). None when no path through the words reaches the
        end. The words must all be in the dictionary (`unknown_words`)."""
        self.decoder.set_align_text(normalize_text(text, "en"))
        words = _pocketsphinx_words(self.decoder, wave, sample_rate)
        if words is None:
            return None
        return [-math.log(max(s.ascore, 1e-300)) / (s.end_frame - s.start_frame + 1)  # s.ascore: a probability
                for s in words]


class OpenAIWhisper(Transcriber):
    name = "openai-whisper"

    def __init__(self, model: str, device: str):
        import whisper

        self.model = whisper.load_model(model, device=device)

    def transcribe(self, wave, sample_rate, language, key):
        return self.model.transcribe(_to_asr_rate(wave, sample_rate), language=language)["text"].strip()


def get_transcriber(model: str, device: str = "cpu", transcripts: str | None = None, *,
                    words: bool = False) -> tuple[Transcriber | None, str]:
    """-> (backend, a line saying what transcribes). `model`: a Whisper model name or local folder, or pocketsphinx.

    `words` is the caller's rule. False (the evaluation: text only): a missing package or a model that cannot be
    loaded is never an error, the line says why nothing transcribes (the WER column is skipped). True (the
    segmenter: word timings needed): only backends with word timings are tried, and a missing one is a UserError.
    """
    if transcripts:
        return TranscriptFile(transcripts), f"intelligibility: transcripts from {transcripts}"
    what = "transcription" if words else "intelligibility"
    if model == "none":
        return None, ("transcription: none (segments without text are flagged no_text)" if words
                      else "intelligibility (WER/CER) skipped: --asr-model none")
    if model == "pocketsphinx":
        try:
            return Pocketsphinx(), f"{what}: pocketsphinx (English, offline; far less accurate than Whisper)"
        except ImportError:
            return _unavailable(words, "pocketsphinx not installed", "pip install 'valle-toolkit[segment]'")
    errors = []
    for cls in (FasterWhisper,) if words else (FasterWhisper, OpenAIWhisper):
        try:
            backend = cls(model, device)
        except ImportError:
            errors.append(f"{cls.name} not installed")
            continue
        except Exception as e:  # noqa: BLE001 - a download that fails offline, a bad path: say which and how to fix
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return _unavailable(words, f"{cls.name} could not load the model {model} ({first[:200]})",
                                "offline, pass a local model folder" + ("" if words else " or --asr-transcripts FILE"))
        return backend, f"{what}: {cls.name} {model}"
    return _unavailable(words, f"no Whisper backend ({', '.join(errors)})", "pip install 'valle-toolkit[asr]'"
                        + (" or use pocketsphinx (English)" if words else " or pass --asr-transcripts FILE"))


def _unavailable(words: bool, why: str, fix: str) -> tuple[None, str]:
    """No backend: the segmenter's rule (words) is an error, the evaluation's a line saying WER is skipped."""
    if words:
        raise UserError(f"no transcriber with word timings: {why}; {fix}")
    return None, f"intelligibility (WER/CER) skipped: {why}; {fix}"
