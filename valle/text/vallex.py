"""The released VALL-E X tokenizer (Plachtaa/VALL-E-X), reproduced: marked text -> per-language g2p ->
phoneme string -> one id per character of the 70-entry table (spaces become `_`, unknown characters 0).

The release tokenizes with a `tokenizers` BPE that has no merges and a whitespace pre-tokenizer; for any
phoneme string it accepts that is exactly a per-character lookup (tests/test_text_vallex.py checks this).
"""

from __future__ import annotations

import re

from valle.text.base import MARKED, MARKS, TextError, TextTokenizer, Tokenized, check_language, find_marked
from valle.text.g2p_en import english_to_ipa
from valle.text.g2p_ja import japanese_to_ipa
from valle.text.g2p_zh import chinese_to_ipa
from valle.text.symbols import load_vallex_table

_G2P = {"zh": chinese_to_ipa, "ja": japanese_to_ipa, "en": english_to_ipa}  # the release's order
_SEGMENT_END = re.compile(r"([^.,!?\-…~])$")
# Unicode White_Space: the release's pre-tokenizer drops these (and then fails an assertion); we read them as spaces.
_WHITESPACE = re.compile("[\t\n\x0b\x0c\r\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_NOT_PHONEMES = set("_.,!?-…~")  # ids made only of these (or unknown symbols) mean nothing was pronounced


def _segment_to_ipa(segment: str) -> str:
    """One `[XX]...[XX]` span -> phonemes, ending with punctuation (a `.` is added when missing)."""
    for lang, g2p in _G2P.items():
        if MARKS[lang] in segment:
            segment = MARKED[lang].sub(lambda m, g2p=g2p: g2p(m.group(1)) + " ", segment)
    return _SEGMENT_END.sub(r"\1.", segment.rstrip())


def _segment_language(segment: str) -> str:
    return next(lang for lang, mark in MARKS.items() if mark in segment)  # en, zh, ja: the release's order


def phonemize_marked(text: str) -> tuple[str, list[str]]:
    """Text with language marks -> (phonemes, language per character). Text outside marks is ignored."""
    phonemes, languages = "", []
    for _, match in find_marked(text):
        segment = _segment_to_ipa(match.group(0))
        phonemes += segment
        languages += [_segment_language(match.group(0))] * len(segment)
    return phonemes, languages


class VallexTokenizer(TextTokenizer):
    """Tokenizer of the released VALL-E X checkpoint (ids < 70; pad id 3 = [PAD]; no BOS/EOS)."""

    name = "vallex"

    def __init__(self) -> None:
        super().__init__()
        self.vocab = load_vallex_table()
        self.pad_id = self.vocab["[PAD]"]
        self.unk_id = self.vocab["[UNK]"]
        self._usable = {i for s, i in self.vocab.items() if len(s) == 1 and s not in _NOT_PHONEMES}

    def encode(self, text: str, language: str) -> Tokenized:
        check_language(text, language)
        marked = text.replace("\n", "").strip(" ")  # as the release's generate_audio does
        if language != "mix":
            marked = MARKS[language] + marked + MARKS[language]
        elif not find_marked(marked):
            raise TextError(f"mix text {text!r} has no language marks; write e.g. [EN]Hello[EN][ZH]你好[ZH]")
        try:
            phonemes, languages = phonemize_marked(marked)
        except TextError:
            raise
        except Exception as e:  # a g2p library failing on odd input: the text is rejected, not the run
            raise TextError(f"{language} g2p failed on {text!r}: {type(e).__name__}: {e}") from e
        phonemes = _WHITESPACE.sub(" ", phonemes)
        ids = [self.vocab.get(c, self.unk_id) for c in phonemes.replace(" ", "_")]
        unknown = [c for c, i in zip(phonemes, ids) if i == self.unk_id]
        return self._checked(text, language, Tokenized(phonemes, ids, languages, unknown), self._usable)
