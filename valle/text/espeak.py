"""The `espeak` tokenizer, for training from scratch the way lifeiteng/vall-e does: phonemizer + espeak-ng phones
(word separator `_`, punctuation kept, no stress), a symbol table in k2's text format
(`unique_text_tokens.k2symbols`), and ids as lifeiteng's collater assigns them:
<pad> 0, <bos> 1, <eos> 2, then the table's symbols (with k2's `<eps>`) sorted.
Unknown phones map to the id of `<eps>`, which phonemization never produces, so a lifeiteng table keeps its ids."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

from phonemizer.backend import EspeakBackend
from phonemizer.backend.espeak.wrapper import EspeakWrapper
from phonemizer.logger import get_logger
from phonemizer.punctuation import Punctuation
from phonemizer.separator import Separator

from valle.errors import UserError
from valle.text.base import TextError, TextTokenizer, Tokenized, check_language, find_marked
from valle.text.symbols import read_k2_symbols, write_k2_symbols

ESPEAK_VOICES = {"en": "en-us", "zh": "cmn", "ja": "ja"}
SPECIALS = ("<pad>", "<bos>", "<eos>")  # added by the collater, not by encode()
EPS = "<eps>"
WORD = "_"
_SEPARATOR = Separator(word=WORD, syllable="-", phone="|")
_PIECES = re.compile(r"\w+|[^\w\s]")
_LIBRARIES = [  # where libespeak-ng lives when ctypes cannot find it
    "/opt/homebrew/lib/libespeak-ng.dylib", "/usr/local/lib/libespeak-ng.dylib",
    "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1", "/usr/lib/aarch64-linux-gnu/libespeak-ng.so.1",
    "/usr/lib64/libespeak-ng.so.1", "/usr/lib/libespeak-ng.so.1", "/usr/local/lib/libespeak-ng.so.1",
]


def ensure_espeak_library() -> str:
    """Make phonemizer find libespeak-ng without PHONEMIZER_ESPEAK_LIBRARY; returns the library used."""
    try:
        return str(EspeakWrapper.library())
    except RuntimeError:
        pass
    found = next((p for p in _LIBRARIES if Path(p).is_file()), None)
    if found is None:
        raise UserError("libespeak-ng not found: install espeak-ng (apt-get install espeak-ng, brew install "
                        "espeak-ng) or set PHONEMIZER_ESPEAK_LIBRARY=/path/to/libespeak-ng.so")
    EspeakWrapper.set_library(found)
    return found


@functools.cache
def _backend(language: str) -> EspeakBackend:
    ensure_espeak_library()
    return EspeakBackend(
        ESPEAK_VOICES[language], punctuation_marks=Punctuation.default_marks(), preserve_punctuation=True,
        with_stress=False, tie=False, language_switch="keep-flags", words_mismatch="ignore", logger=get_logger("quiet"),
    )


def split_phones(phonemized: str) -> list[str]:
    """`h|ə|l|oʊ_w|ɜː|l|d,` -> h ə l oʊ _ w ɜː l d , (words joined by `_`, punctuation its own token)."""
    tokens: list[str] = []
    for word in phonemized.split(WORD):
        tokens += [p for p in _PIECES.findall(word) if p != _SEPARATOR.phone] + [WORD]
    return tokens[:-1]


def _phones(text: str, language: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    return split_phones(_backend(language).phonemize([text], separator=_SEPARATOR, strip=True, njobs=1)[0])


def phonemize(text: str, language: str) -> tuple[list[str], list[str]]:
    """Text -> (phones, language per phone); "mix" text is phonemized per `[XX]...[XX]` span."""
    check_language(text, language)
    spans = [(lang, m.group(1)) for lang, m in find_marked(text)] if language == "mix" else [(language, text)]
    phones: list[str] = []
    languages: list[str] = []
    for lang, span in spans:
        out = _phones(span, lang)
        if phones and out:
            out = [WORD] + out
        phones += out
        languages += [lang] * len(out)
    return phones, languages


class EspeakTokenizer(TextTokenizer):
    """espeak-ng phones -> ids of a fixed symbol table (build it once from a corpus with `build_vocab`)."""

    name = "espeak"
    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, phones: Iterable[str] = ()) -> None:
        super().__init__()
        self._set_table(phones)

    def _set_table(self, phones: Iterable[str]) -> None:
        symbols = sorted(set(phones) | {EPS})
        self.vocab = {s: i for i, s in enumerate(SPECIALS + tuple(symbols))}
        self.unk_id = self.vocab[EPS]
        self._usable = {i for s, i in self.vocab.items() if re.search(r"\w", s) and s != WORD and s != EPS}

    @property
    def phones(self) -> list[str]:
        return [s for s in self.vocab if s not in SPECIALS and s != EPS]

    @classmethod
    def from_k2symbols(cls, path: str | Path) -> EspeakTokenizer:
        return cls(s for s in read_k2_symbols(path) if s not in SPECIALS)

    @classmethod
    def from_vocab(cls, vocab: dict[str, int]) -> EspeakTokenizer:
        tokenizer = cls(s for s in vocab if s not in SPECIALS and s != EPS)
        if tokenizer.vocab != vocab:
            raise UserError("not an espeak tokenizer vocabulary: expected <pad> 0, <bos> 1, <eos> 2, "
                            "then sorted symbols")
        return tokenizer

    def build_vocab(self, phone_sequences: Iterable[list[str]]) -> EspeakTokenizer:
        """Fix the symbol table from the phones of a corpus (once; the table never changes afterwards)."""
        if self.phones:
            raise ValueError("the espeak symbol table is already built; it is fixed once made")
        self._set_table(p for seq in phone_sequences for p in seq)
        return self

    def save_k2symbols(self, path: str | Path) -> None:
        """Write the table as lifeiteng does: `<eps> 0`, then the sorted phones from 1."""
        write_k2_symbols({EPS: 0, **{s: i for i, s in enumerate(sorted(self.phones), 1)}}, path)

    def encode(self, text: str, language: str) -> Tokenized:
        if not self.phones:
            raise TextError(f"cannot encode {text!r}: the espeak tokenizer has no symbol table yet "
                            "(pass --symbols unique_text_tokens.k2symbols, or build it from the corpus)")
        phones, languages = phonemize(text, language)
        ids = [self.vocab.get(p, self.unk_id) for p in phones]
        unknown = [p for p in phones if p not in self.vocab]
        return self._checked(text, language, Tokenized(" ".join(phones), ids, languages, unknown), self._usable)
