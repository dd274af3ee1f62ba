"""English g2p of the released VALL-E X tokenizer: normalize, CMU-dictionary IPA (eng_to_ipa), post-process."""

from __future__ import annotations

import re

import eng_to_ipa
import inflect
from unidecode import unidecode

_inflect = inflect.engine()

# Abbreviations with a period, expanded in this order (case-insensitive, at a word start).
_ABBREVIATIONS = [
    (re.compile(rf"\b{short}\.", re.IGNORECASE), full)
    for short, full in [
        ("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"),
        ("jr", "junior"), ("maj", "major"), ("gen", "general"), ("drs", "doctors"), ("rev", "reverend"),
        ("lt", "lieutenant"), ("hon", "honorable"), ("sgt", "sergeant"), ("capt", "captain"),
        ("esq", "esquire"), ("ltd", "limited"), ("col", "colonel"), ("ft", "fort"),
    ]
]
_COMMA_NUMBER = re.compile(r"([0-9][0-9,]+[0-9])")
_POUNDS = re.compile(r"£([0-9,]*[0-9]+)")
_DOLLARS = re.compile(r"\$([0-9.,]*[0-9]+)")
_DECIMAL = re.compile(r"([0-9]+\.[0-9]+)")
_ORDINAL = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER = re.compile(r"[0-9]+")
# "l" before consonants up to the word end is dark
_DARK_L = re.compile(r"l([^aeiouæɑɔəɛɪʊ ]*(?: |$))")
_IPA_FIXES = [("r", "ɹ"), ("ʤ", "dʒ"), ("ʧ", "tʃ")]


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _dollars(m: re.Match) -> str:
    """`$12.50` -> `12 dollars, 50 cents`."""
    parts = m.group(1).split(".")
    if len(parts) > 2:
        return m.group(1) + " dollars"
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    if dollars and cents:
        return f"{_count(dollars, 'dollar')}, {_count(cents, 'cent')}"
    if dollars or cents:
        return _count(dollars, "dollar") if dollars else _count(cents, "cent")
    return "zero dollars"


def _number(m: re.Match) -> str:
    """Integers in words; 1001-2999 read as years (`1999` -> `nineteen ninety-nine`)."""
    num = int(m.group(0))
    if not 1000 < num < 3000:
        return _inflect.number_to_words(num, andword="")
    if num == 2000:
        return "two thousand"
    if 2000 < num < 2010:
        return "two thousand " + _inflect.number_to_words(num % 100)
    if num % 100 == 0:
        return _inflect.number_to_words(num // 100) + " hundred"
    return _inflect.number_to_words(num, andword="", zero="oh", group=2).replace(", ", " ")


def normalize_numbers(text: str) -> str:
    text = _COMMA_NUMBER.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _POUNDS.sub(r"\1 pounds", text)
    text = _DOLLARS.sub(_dollars, text)
    text = _DECIMAL.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ORDINAL.sub(lambda m: _inflect.number_to_words(m.group(0)), text)
    return _NUMBER.sub(_number, text)


def english_to_ipa(text: str) -> str:
    """English text -> IPA as the released tokenizer writes it (ɹ, dark ɫ, dʒ, tʃ, stress marks)."""
    text = unidecode(text).lower()
    for pattern, full in _ABBREVIATIONS:
        text = pattern.sub(full, text)
    text = re.sub(r"\s+", " ", eng_to_ipa.convert(normalize_numbers(text)))
    text = _DARK_L.sub(lambda m: "ɫ" + m.group(1), text)
    for old, new in _IPA_FIXES:
        text = text.replace(old, new)
    return text.replace("...", "…")
