"""The interface every text tokenizer implements, and the language marks they share."""

from __future__ import annotations

import collections
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from valle.config import INPUT_LANGUAGES, LANGUAGES
from valle.errors import UserError

MARKS = {lang: f"[{lang.upper()}]" for lang in LANGUAGES}  # [EN] [ZH] [JA]
MARKED = {lang: re.compile(re.escape(m) + r"(.*?)" + re.escape(m)) for lang, m in MARKS.items()}  # [XX](text)[XX]


class TextError(UserError):
    """Text that a tokenizer cannot turn into tokens (the message names the text)."""


@dataclass
class Tokenized:
    """One encoded text: the phoneme string, one id and one language code per token."""

    phonemes: str
    ids: list[int]
    languages: list[str]
    unknown: list[str] = field(default_factory=list)  # symbols not in the vocabulary (mapped to the unk id)


class TextTokenizer(ABC):
    """Text -> phoneme ids. Subclasses set `name`, `vocab`, `pad_id`, `unk_id` (where unknown symbols go)."""

    name: str
    vocab: dict[str, int]
    pad_id: int
    unk_id: int

    def __init__(self) -> None:
        self.unknown_counts: collections.Counter = collections.Counter()  # over all encode() calls

    @abstractmethod
    def encode(self, text: str, language: str) -> Tokenized:
        """Tokenize `text` in language en|zh|ja, or "mix" for text with [EN]..[EN] style marks."""

    def to_dict(self) -> dict:
        return {"name": self.name, "vocab": dict(self.vocab)}

    def _checked(self, text: str, language: str, tokenized: Tokenized, usable: set[int]) -> Tokenized:
        """Count unknown symbols; refuse a result with no id in `usable`."""
        if not any(i in usable for i in tokenized.ids):
            raise TextError(f"no phonemes for {language} text {text!r} (got {tokenized.phonemes!r})")
        self.unknown_counts.update(tokenized.unknown)
        return tokenized


def check_language(text: str, language: str) -> None:
    if language not in INPUT_LANGUAGES:
        raise TextError(f"unknown language {language!r} for text {text!r}; use one of {', '.join(INPUT_LANGUAGES)}")


def find_marked(text: str) -> list[tuple[str, re.Match]]:
    """Every `[XX]...[XX]` span of each language, ordered by start (spans of different languages may overlap)."""
    found = [(lang, m) for lang, pattern in MARKED.items() for m in pattern.finditer(text)]
    return sorted(found, key=lambda lm: lm[1].start())
