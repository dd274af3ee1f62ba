"""valle tokenize-text, run as a user runs it (subprocess from the repo root)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = [json.loads(line) for name in ("vallex_text_golden.jsonl", "vallex_ja_golden.jsonl")
          for line in (ROOT / "tests/data" / name).read_text(encoding="utf-8").splitlines()]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valle", "tokenize-text", *args], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=120)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_golden_file_through_input(tmp_path):
    src = write_lines(tmp_path / "in.tsv", [f"{r['language']}\t{r['text']}" for r in GOLDEN])
    out = run("--input", str(src))
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert got == [{k: r[k] for k in ("phonemes", "ids", "languages")} for r in GOLDEN]
    assert "'\"' x2" in out.stderr  # unknown symbols are reported


def test_single_text():
    out = run("--language", "zh", "--text", "你好，世界。")
    assert out.returncode == 0, out.stderr
    assert out.stdout == '{"phonemes": "ni↓↑xɑʊ↓↑, s`ɹ`↓tʃ⁼iɛ↓.", "ids": [30, 25, 69, 67, 38, 46, 58, 69, 67, 8, ' \
        '16, 33, 17, 55, 17, 69, 34, 57, 66, 25, 49, 69, 10], "languages": ' + json.dumps(["zh"] * 23) + "}\n"


def test_single_japanese_text():
    row = next(r for r in GOLDEN if r["text"] == "東京駅で友達に会いました。")
    out = run("--language", "ja", "--text", row["text"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {k: row[k] for k in ("phonemes", "ids", "languages")}


def test_espeak_builds_table_from_texts_or_reads_it(tmp_path):
    src = write_lines(tmp_path / "in.tsv", ["en\tdo you", "", "en\thear me?"])
    out = run("--tokenizer", "espeak", "--input", str(src))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["phonemes"] for r in rows] == ["d uː _ j uː", "h ɪɹ _ m iː ?"]
    # ids: <pad> 0 <bos> 1 <eos> 2, then sorted: <eps> 3 ? 4 _ 5 d 6 h 7 iː 8 j 9 m 10 uː 11 ɪɹ 12
    assert rows[0]["ids"] == [6, 11, 5, 9, 11] and rows[1]["ids"] == [7, 12, 5, 10, 8, 4]
    table = write_lines(tmp_path / "t.k2symbols", ["<eps> 0", "_ 1", "d 2", "uː 3"])
    out = run("--tokenizer", "espeak", "--symbols", str(table), "--text", "do me")
    assert json.loads(out.stdout) == {"phonemes": "d uː _ m iː", "ids": [5, 6, 4, 3, 3], "languages": ["en"] * 5}
    assert "'m' x1" in out.stderr and "(id 3)" in out.stderr


@pytest.mark.parametrize("lines, match", [
    (["en\tHello", "fr\tBonjour"], r"in.tsv:2: language 'fr' is not one of en, zh, ja, mix"),
    (["en\tHello", "", "Hello without a tab"], r"in.tsv:3: expected LANG<TAB>TEXT"),
    (["en\tHello", "en\t   "], r"no phonemes for en text '   '"),
    (["ja\tこんにちは", "ja\tねこ😀"], r"Japanese text 'ねこ😀': the g2p cannot read '😀' \(U\+1F600\)"),
])
def test_bad_input_lines(tmp_path, lines, match):
    out = run("--input", str(write_lines(tmp_path / "in.tsv", lines)))
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert re.search(match, out.stderr), out.stderr


def test_missing_and_undecodable_files(tmp_path):
    out = run("--input", str(tmp_path / "nope.tsv"))
    assert out.returncode == 2 and "nope.tsv: no such file" in out.stderr
    (tmp_path / "latin1.tsv").write_bytes("en\tcaf\xe9\n".encode("latin-1"))
    out = run("--input", str(tmp_path / "latin1.tsv"))
    assert out.returncode == 2 and "latin1.tsv: not UTF-8" in out.stderr


def test_symbols_only_for_espeak(tmp_path):
    out = run("--symbols", str(tmp_path / "t.k2symbols"), "--text", "hi")
    assert out.returncode == 2 and "--symbols is for --tokenizer espeak only" in out.stderr
