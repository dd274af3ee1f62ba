"""valle infer refuses what it could not finish before any work; long text is split; weak prompts are named."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from valle.errors import UserError
from valle.inference import MAX_TEXT_TOKENS, make_prompt, split_text
from valle.text import get_tokenizer

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "vallex_tiny"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def infer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valle", "infer", *args], capture_output=True, text=True,
                          cwd=REPO, env=ENV, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("make_output, expected", [
    (lambda d: str(d / "out"), "must end in .wav or .flac or .ogg"),
    (lambda d: str(d), "is a folder"),
    (lambda d: str(d / "notes.txt" / "out.wav"), "is a file, not a folder"),
    (lambda d: str(d / "out.mp3"), "must end in .wav"),
])
def test_bad_output_is_refused_before_loading_anything(tmp_path, make_output, expected):
    (tmp_path / "notes.txt").write_text("x")
    # the checkpoint does not exist either: the output is checked first, before any loading or synthesis
    line = one_line_error(infer("--checkpoint", str(tmp_path / "missing.pt"), "--text", "Hello.",
                                "--output", make_output(tmp_path)))
    assert expected in line


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_output_where_no_file_can_be_made_is_refused_first(tmp_path):
    """/proc passes the permission-bit checks (root passes them all) yet takes no new file: refused at once, not
    after synthesis with a soundfile traceback."""
    line = one_line_error(infer("--checkpoint", str(tmp_path / "missing.pt"), "--text", "Hi.", "--output",
                                "/proc/x.wav"))
    assert line.startswith("error: --output /proc/x.wav: cannot write in /proc ("), line


def test_bad_codes_path_and_output_dir(tmp_path):
    line = one_line_error(infer("--checkpoint", "missing.pt", "--text", "Hi.", "--output", str(tmp_path / "a.wav"),
                                "--save-codes", str(tmp_path / "codes.txt")))
    assert "--save-codes" in line and ".npy" in line
    (tmp_path / "list.tsv").write_text("a\ten\tHello.\n")
    (tmp_path / "afile").write_text("x")
    line = one_line_error(infer("--checkpoint", "missing.pt", "--input", str(tmp_path / "list.tsv"),
                                "--output-dir", str(tmp_path / "afile")))
    assert "--output-dir" in line and "is a file" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permission checks cannot fail")
def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    line = one_line_error(infer("--checkpoint", "missing.pt", "--text", "Hi.", "--output", str(locked / "a.wav")))
    assert "permission denied" in line


@pytest.mark.parametrize("flags", [["--temperature", "nan"], ["--temperature", "inf"], ["--top-p", "nan"],
                                   ["--temperature", "0"], ["--max-frames", "10000000"]])
def test_nan_and_out_of_range_numbers_are_refused(tmp_path, flags):
    line = one_line_error(infer("--checkpoint", "missing.pt", "--text", "Hi.", "--output", str(tmp_path / "a.wav"),
                                *flags))
    assert flags[0] in line


def test_split_text_packs_sentences_under_the_limit():
    tok = get_tokenizer("vallex")
    text = " ".join(f"Sentence number {i} says something, and then a little more." for i in range(12))
    pieces = split_text(text, "en", tok, max_tokens=120)
    sizes = [len(tok.encode(p, "en").ids) for p in pieces]
    assert len(pieces) > 3 and max(sizes) <= 120
    assert " ".join(pieces) == text  # nothing lost, order kept
    assert split_text("Short.", "en", tok) == ["Short."]
    zh = "今天天气很好。我们去公园散步吧！" * 12
    zh_pieces = split_text(zh, "zh", tok, max_tokens=100)
    assert "".join(zh_pieces) == zh and len(zh_pieces) > 1
    with pytest.raises(UserError, match="no sentence end or comma"):
        split_text("word " * 200, "en", tok, max_tokens=MAX_TEXT_TOKENS)
    with pytest.raises(UserError, match="mixed-language text"):
        split_text("[EN]" + "Hello there. " * 60 + "[EN]", "mix", tok, max_tokens=MAX_TEXT_TOKENS)


@pytest.mark.slow
def test_long_text_is_generated_in_pieces_into_one_file(tmp_path):
    text = " ".join(f"This is sentence {i}, spoken by the model in its own voice." for i in range(30))
    out = tmp_path / "long.wav"
    proc = infer("--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4", "--codec-weights", "random", "--top-k", "1",
                 "--max-frames", "3", "--text", text, "--output", str(out), "--save-codes", str(tmp_path / "c.npy"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "generated as" in proc.stdout and "pieces" in proc.stdout
    pieces = int(proc.stdout.split("generated as ")[1].split()[0])
    codes = np.load(tmp_path / "c.npy")
    assert pieces >= 3 and 0 < len(codes) <= 3 * pieces
    import soundfile as sf
    assert sf.info(str(out)).frames == len(codes) * 320


def test_short_or_silent_prompt_audio_is_named(caplog, random_codec):
    tok = get_tokenizer("vallex")
    with caplog.at_level(logging.WARNING, logger="valle.inference"):
        make_prompt(torch.zeros(24000), "Hello.", "en", tok, random_codec)
    text = caplog.text
    assert "only 1.0 s" in text and "nearly silent" in text
