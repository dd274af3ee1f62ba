"""The README's path for a new user, run as printed in a fresh shell (no activated environment, no PYTHON):
12 utterances of one's own voice -> prepare -> AR -> NAR -> inference -> curves, in a project folder of one's own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CUSTOM = REPO / "egs" / "custom"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
VALLE = REPO / ".venv" / "bin" / "valle"  # the console script
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore.",
    "A journey of a thousand miles begins with a single step.", "All that glitters is not gold.",
    "Practice makes perfect, they say.", "The early bird catches the worm.",
    "Actions speak louder than words.", "Better late than never, as always.",
    "Every cloud has a silver lining.", "Time flies when you are having fun.",
    "Knowledge is power and power is knowledge.", "Where there is a will, there is a way.",
]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the recordings"),
              pytest.mark.skipif(not VENV_PYTHON.exists(), reason="the recipes use the project's .venv (make setup)")]


def fresh_shell(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run as a user in a new terminal: no virtualenv on PATH, no PYTHON, one thread per op for the CPU runner."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "LANG": "C.UTF-8"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_twelve_utterances_of_my_voice_through_the_whole_recipe(tmp_path):
    voice = tmp_path / "my_voice"
    voice.mkdir()
    for i, text in enumerate(SENTENCES):
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(voice / f"utt{i:02d}.wav"), text], check=True)
        (voice / f"utt{i:02d}.txt").write_text(text + "\n")
    project = tmp_path / "project"  # the user's own working folder: data/ and exp/ go here
    project.mkdir()
    init = project / "init-tiny.pt"  # offline stand-in for --init-checkpoint vallex (same tokenizer, tiny sizes)
    fresh_shell([str(VALLE), "init-checkpoint", "--output", str(init), "--d-model", "64",
                 "--nhead", "4", "--num-layers", "2"], cwd=project)

    fresh_shell([str(CUSTOM / "prepare.sh"), "--corpus", str(voice), "--language", "en", "--codec-weights", "random"],
                cwd=project)
    assert (project / "data" / "tokenized" / "cuts_train.jsonl.gz").is_file()
    fast = ["--device", "cpu", "--num-workers", "0", "--max-steps", "4", "--valid-interval", "2"]
    ar = fresh_shell([str(CUSTOM / "train.sh"), "--model-name", "ar", "--init-checkpoint", str(init), *fast],
                     cwd=project)
    # under a minute of speech: adapters, chosen and explained in one block at the start
    assert "settings from the data: 0." in ar.stdout and "  --adapter lora " in ar.stdout
    assert ["--max-steps", "4", "(your", "flag)"] in [line.split() for line in ar.stdout.splitlines()]
    nar = fresh_shell([str(CUSTOM / "train.sh"), "--model-name", "nar", *fast], cwd=project)
    assert "training nar from exp/ar/best-valid-loss.pt" in nar.stdout  # the NAR starts from the AR run's base
    assert f"exp/ar/best-valid-loss.pt holds adapters: these adapters train on their base, {init}" in nar.stdout
    for half in ("ar", "nar"):
        assert (project / "exp" / half / "best-valid-loss.pt").is_file()
        assert (project / "exp" / half / "plan.json").is_file()

    fresh_shell([str(VALLE), "infer", "--checkpoint", str(init), "--adapter",
                 "exp/ar/best-valid-loss.pt", "exp/nar/best-valid-loss.pt",
                 "--text", "Hello from my own voice.", "--language", "en", "--prompt-audio", str(voice / "utt00.wav"),
                 "--prompt-text", SENTENCES[0], "--codec-weights", "random", "--max-frames", "40",
                 "--output", "hello.wav"], cwd=project)
    assert (project / "hello.wav").stat().st_size > 44
    fresh_shell([str(VALLE), "plot-curves", "exp"], cwd=project)
    assert (project / "exp" / "curves.png").is_file()
    assert not (CUSTOM / "data").exists() and not (CUSTOM / "exp").exists()  # nothing written in the recipe folder
