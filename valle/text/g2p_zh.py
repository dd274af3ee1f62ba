"""Mandarin g2p of the released VALL-E X tokenizer: digits -> hanzi (cn2an), words (jieba) -> bopomofo
(pypinyin) -> an IPA-like spelling with tone arrows (→ ↑ ↓↑ ↓)."""

from __future__ import annotations

import logging
import re

import cn2an
import jieba
from pypinyin import BOPOMOFO, lazy_pinyin

jieba.setLogLevel(logging.WARNING)

_HANZI = re.compile("[\u4e00-\u9fff]")
_DIGITS = re.compile(r"\d+(?:\.?\d+)?")
_BOPOMOFO_LAST = re.compile("([\u3105-\u3129])$")  # a syllable with no tone mark gets the first tone

# Latin letters read as letter names, in bopomofo (applied letter by letter, case-insensitive).
_LATIN = [
    (re.compile(letter, re.IGNORECASE), bopomofo)
    for letter, bopomofo in zip(
        "abcdefghijklmnopqrstuvwxyz",
        "ㄟˉ ㄅㄧˋ ㄙㄧˉ ㄉㄧˋ ㄧˋ ㄝˊㄈㄨˋ ㄐㄧˋ ㄝˇㄑㄩˋ ㄞˋ ㄐㄟˋ ㄎㄟˋ ㄝˊㄛˋ ㄝˊㄇㄨˋ ㄣˉ ㄡˉ ㄆㄧˉ ㄎㄧㄡˉ "
        "ㄚˋ ㄝˊㄙˋ ㄊㄧˋ ㄧㄡˉ ㄨㄧˉ ㄉㄚˋㄅㄨˋㄌㄧㄡˋ ㄝˉㄎㄨˋㄙˋ ㄨㄞˋ ㄗㄟˋ".split(),
    )
]

# Bopomofo (and full-width punctuation) -> IPA-like symbols, replaced in this order.
_TO_IPA = [
    ("ㄅㄛ", "p⁼wo"), ("ㄆㄛ", "pʰwo"), ("ㄇㄛ", "mwo"), ("ㄈㄛ", "fwo"),
    ("ㄅ", "p⁼"), ("ㄆ", "pʰ"), ("ㄇ", "m"), ("ㄈ", "f"), ("ㄉ", "t⁼"), ("ㄊ", "tʰ"), ("ㄋ", "n"),
    ("ㄌ", "l"), ("ㄍ", "k⁼"), ("ㄎ", "kʰ"), ("ㄏ", "x"), ("ㄐ", "tʃ⁼"), ("ㄑ", "tʃʰ"), ("ㄒ", "ʃ"),
    ("ㄓ", "ts`⁼"), ("ㄔ", "ts`ʰ"), ("ㄕ", "s`"), ("ㄖ", "ɹ`"), ("ㄗ", "ts⁼"), ("ㄘ", "tsʰ"), ("ㄙ", "s"),
    ("ㄚ", "a"), ("ㄛ", "o"), ("ㄜ", "ə"), ("ㄝ", "ɛ"), ("ㄞ", "aɪ"), ("ㄟ", "eɪ"), ("ㄠ", "ɑʊ"),
    ("ㄡ", "oʊ"), ("ㄧㄢ", "jɛn"), ("ㄩㄢ", "ɥæn"), ("ㄢ", "an"), ("ㄧㄣ", "in"), ("ㄩㄣ", "ɥn"),
    ("ㄣ", "ən"), ("ㄤ", "ɑŋ"), ("ㄧㄥ", "iŋ"), ("ㄨㄥ", "ʊŋ"), ("ㄩㄥ", "jʊŋ"), ("ㄥ", "əŋ"),
    ("ㄦ", "əɻ"), ("ㄧ", "i"), ("ㄨ", "u"), ("ㄩ", "ɥ"),
    ("ˉ", "→"), ("ˊ", "↑"), ("ˇ", "↓↑"), ("ˋ", "↓"), ("˙", ""),
    ("，", ","), ("。", "."), ("！", "!"), ("？", "?"), ("—", "-"),
]


def _to_bopomofo(text: str) -> str:
    """Hanzi words -> bopomofo syllables, words separated by spaces; other text is kept."""
    text = text.replace("、", "，").replace("；", "，").replace("：", "，")
    out = ""
    for word in jieba.lcut(text, cut_all=False):
        if not _HANZI.search(word):
            out += word
            continue
        syllables = [_BOPOMOFO_LAST.sub(r"\1ˉ", s) for s in lazy_pinyin(word, BOPOMOFO)]
        out += (" " if out else "") + "".join(syllables)
    return out


def chinese_to_ipa(text: str) -> str:
    """Mandarin text -> the released tokenizer's IPA-like spelling."""
    text = _DIGITS.sub(lambda m: cn2an.an2cn(m.group(0)), text)
    text = _to_bopomofo(text)
    for pattern, bopomofo in _LATIN:
        text = pattern.sub(bopomofo, text)
    for old, new in _TO_IPA:
        text = text.replace(old, new)
    text = re.sub("i([aoe])", r"j\1", text)
    text = re.sub("u([aoəe])", r"w\1", text)
    # syllabic vowel after retroflex (ɹ`) and dental (ɹ) sibilants
    text = re.sub("([sɹ]`[⁼ʰ]?)([→↓↑ ]+|$)", r"\1ɹ`\2", text).replace("ɻ", "ɹ`")
    return re.sub("([s][⁼ʰ]?)([→↓↑ ]+|$)", r"\1ɹ\2", text)
