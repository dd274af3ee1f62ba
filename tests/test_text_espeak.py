"""The `espeak` tokenizer (lifeiteng-style phones and k2 symbol table) and the saved tokenizer info."""

import pytest

import valle.text.espeak as espeak
from valle.errors import UserError
from valle.text import (
    TextError,
    check_same_tokenizer,
    get_tokenizer,
    load_tokenizer_info,
    save_tokenizer_info,
    tokenizer_from_info,
)
from valle.text.espeak import EspeakTokenizer, phonemize, split_phones
from valle.text.symbols import read_k2_symbols, write_k2_symbols

CORPUS = ["Mother! dear father! do you hear me?", "The two parties met."]


@pytest.fixture(scope="module")
def tok():
    return EspeakTokenizer().build_vocab(phonemize(t, "en")[0] for t in CORPUS)


def test_split_phones():
    assert split_phones("h|ə|l|oʊ_w|ɜː|l|d,_ɪ|t") == ["h", "ə", "l", "oʊ", "_", "w", "ɜː", "l", "d", ",", "_", "ɪ", "t"]
    assert split_phones("(en)|h|aɪ") == ["(", "en", ")", "h", "aɪ"]
    assert split_phones("") == []


def test_phones_match_lifeiteng():
    # the expected phones of lifeiteng/vall-e's own tokenizer test (espeak-ng, en-us)
    phones, languages = phonemize("Mother! dear father! do you hear me?", "en")
    assert phones[:14] == ["m", "ʌ", "ð", "ɚ", "!", "_", "d", "ɪɹ", "_", "f", "ɑː", "ð", "ɚ", "!"]
    assert languages == ["en"] * len(phones)
    assert phonemize("The two parties", "en")[0][:9] == ["ð", "ə", "_", "t", "uː", "_", "p", "ɑːɹ", "ɾ"]


def test_vocab_ids_as_lifeiteng_collater(tok):
    phones = sorted(set(p for t in CORPUS for p in phonemize(t, "en")[0]))
    expected = ["<pad>", "<bos>", "<eos>"] + sorted(phones + ["<eps>"])
    assert list(tok.vocab) == expected and list(tok.vocab.values()) == list(range(len(expected)))
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, expected.index("<eps>"))
    assert tok.name == "espeak"


def test_encode(tok):
    t = tok.encode("do you hear me?", "en")
    assert t.phonemes == "d uː _ j uː _ h ɪɹ _ m iː ?"
    assert t.ids == [tok.vocab[p] for p in t.phonemes.split()]
    assert t.languages == ["en"] * 12 and t.unknown == []


def test_unknown_phones_map_to_eps_and_are_counted():
    tok = EspeakTokenizer().build_vocab([["d", "uː", "_"]])
    t = tok.encode("do be", "en")
    assert t.phonemes == "d uː _ b iː"
    assert t.ids == [tok.vocab["d"], tok.vocab["uː"], tok.vocab["_"], tok.unk_id, tok.unk_id]
    assert t.unknown == ["b", "iː"] and tok.unknown_counts == {"b": 1, "iː": 1}


def test_table_is_fixed_once_built(tok):
    with pytest.raises(ValueError, match="already built"):
        tok.build_vocab([["x"]])


def test_k2symbols_round_trip(tmp_path, tok):
    path = tmp_path / "unique_text_tokens.k2symbols"
    tok.save_k2symbols(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "<eps> 0"
    assert lines[1:] == [f"{s} {i}" for i, s in enumerate(sorted(tok.phones), 1)]
    assert EspeakTokenizer.from_k2symbols(path).vocab == tok.vocab
    assert get_tokenizer("espeak", symbols=path).vocab == tok.vocab


def test_reads_lifeiteng_table(tmp_path):
    path = tmp_path / "unique_text_tokens.k2symbols"
    path.write_text("<eps> 0\n! 1\n_ 2\na 3\nb 4\n\n", encoding="utf-8")
    assert read_k2_symbols(path) == {"<eps>": 0, "!": 1, "_": 2, "a": 3, "b": 4}
    vocab = EspeakTokenizer.from_k2symbols(path).vocab
    assert vocab == {"<pad>": 0, "<bos>": 1, "<eos>": 2, "!": 3, "<eps>": 4, "_": 5, "a": 6, "b": 7}


@pytest.mark.parametrize("content, match", [
    ("<eps> 0\na\n", r":2: expected 'symbol id'"),
    ("<eps> 0\na x\n", r":2: expected 'symbol id'"),
    ("<eps> 0\na 1\na 2\n", r":3: duplicate"),
    ("<eps> 0\na 0\n", r":2: duplicate"),
])
def test_bad_k2_table(tmp_path, content, match):
    path = tmp_path / "t.k2symbols"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=match):
        read_k2_symbols(path)


def test_missing_k2_table(tmp_path):
    with pytest.raises(UserError, match="not found"):
        get_tokenizer("espeak", symbols=tmp_path / "nope.k2symbols")


def test_write_refuses_whitespace_symbol(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_k2_symbols({"a b": 1}, tmp_path / "t")


def test_mix_text_per_language():
    phones, languages = phonemize("[EN]do[EN][EN]me[EN]", "mix")
    assert phones == ["d", "uː", "_", "m", "iː"]
    assert languages == ["en"] * 5


@pytest.mark.parametrize("text, language, match", [
    ("", "en", "no phonemes"),
    ("   ", "en", "no phonemes"),
    ("?!", "en", "no phonemes"),
    ("hi", "de", "unknown language 'de'"),
])
def test_unusable_text(tok, text, language, match):
    with pytest.raises(TextError, match=match):
        tok.encode(text, language)


def test_encode_needs_a_table():
    with pytest.raises(TextError, match="no symbol table"):
        EspeakTokenizer().encode("hello", "en")


def test_library_found_without_environment(monkeypatch):
    from phonemizer.backend.espeak import wrapper

    monkeypatch.delenv("PHONEMIZER_ESPEAK_LIBRARY", raising=False)
    monkeypatch.setattr(wrapper.EspeakWrapper, "_ESPEAK_LIBRARY", None)
    assert "espeak" in espeak.ensure_espeak_library()  # phonemizer's own lookup
    monkeypatch.setattr(wrapper, "_find_library", lambda name: None)  # as where ctypes finds nothing
    monkeypatch.setattr(espeak, "_LIBRARIES", [str(wrapper.__file__)])  # any existing file stands in
    assert espeak.ensure_espeak_library() == str(wrapper.__file__)
    assert wrapper.EspeakWrapper.library() == str(wrapper.__file__)
    monkeypatch.setattr(wrapper.EspeakWrapper, "_ESPEAK_LIBRARY", None)
    monkeypatch.setattr(espeak, "_LIBRARIES", ["/nonexistent/libespeak-ng.so.1"])
    with pytest.raises(UserError, match="apt-get install espeak-ng"):
        espeak.ensure_espeak_library()


def test_tokenizer_info(tmp_path, tok):
    save_tokenizer_info(tok, tmp_path)
    info = load_tokenizer_info(tmp_path)
    assert info == {"name": "espeak", "vocab": tok.vocab}
    assert tokenizer_from_info(info).encode("do you", "en").ids == tok.encode("do you", "en").ids
    check_same_tokenizer(info, tok.to_dict(), "here")


def test_check_same_tokenizer_names_the_difference(tok):
    vallex = get_tokenizer("vallex").to_dict()
    with pytest.raises(UserError, match=r"exp/best.pt: text tokenizer mismatch: name 'espeak' vs 'vallex'"):
        check_same_tokenizer(tok.to_dict(), vallex, "exp/best.pt")
    other = dict(tok.vocab, zz=len(tok.vocab))
    other["d"], other["m"] = other["m"], other["d"]
    with pytest.raises(UserError, match=r"1 symbols only in the second \['zz'\]; 2 ids differ, e.g. 'd': \d+ vs \d+"):
        check_same_tokenizer(tok.to_dict(), {"name": "espeak", "vocab": other}, "data")


def test_load_tokenizer_info_errors(tmp_path):
    with pytest.raises(UserError, match="text_tokenizer.json not found"):
        load_tokenizer_info(tmp_path)
    (tmp_path / "text_tokenizer.json").write_text("{", encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON"):
        load_tokenizer_info(tmp_path)
    (tmp_path / "text_tokenizer.json").write_text('{"name": "vallex"}', encoding="utf-8")
    with pytest.raises(UserError, match="'name' and 'vocab'"):
        load_tokenizer_info(tmp_path)


def test_from_vocab_refuses_foreign_vocab():
    with pytest.raises(UserError, match="not an espeak tokenizer vocabulary"):
        EspeakTokenizer.from_vocab({"[UNK]": 0, "a": 1})
