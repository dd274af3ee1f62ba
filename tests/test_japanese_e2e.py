"""Japanese end to end, as a user runs it: recordings with Japanese transcripts -> egs/custom/prepare.sh
--language ja (every stage; a transcript the g2p cannot read lands in rejected.tsv) -> AR and NAR training steps
-> a Japanese voice preset (lang_code 1) -> valle infer -> valle evaluate scoring CER.

Speech: espeak-ng's Japanese voice (random Encodec and a tiny random model: the pipeline is tested, not quality)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from valle.config import LANGUAGE_IDS
from valle.data.files import open_cuts
from valle.text import get_tokenizer

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    "こんにちは、げんきですか。", "今日は雨が降っています。", "東京駅で友達に会いました。",
    "日本語を勉強するのは楽しいです。",
    "明日の会議は午後三時からです。", "りんごを3個とみかんを10個ください。", "コーヒーとサンドイッチをお願いします。",
    "AIの研究をしています。", "富士山の頂上から日の出を見た。", "この本はとても面白かった。",
    "ちょっとまってください。", "昨日、新しい靴を買いました。",
]
UNREADABLE = "ねこがすき😀"  # an emoji: rejected with the file named, the other utterances prepared

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the recordings")]


def run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def record(folder: Path, texts: list[str]) -> None:
    folder.mkdir()
    for i, text in enumerate(texts):
        subprocess.run(["espeak-ng", "-v", "ja", "-w", str(folder / f"utt{i:02d}.wav"), text], check=True)
        (folder / f"utt{i:02d}.txt").write_text(text + "\n", encoding="utf-8")


def test_japanese_corpus_to_synthesis_and_cer(tmp_path):
    voice, project = tmp_path / "voice", tmp_path / "project"
    record(voice, SENTENCES + [UNREADABLE])
    project.mkdir()
    run([sys.executable, "-m", "valle", "init-checkpoint", "--output", "init-tiny.pt", "--d-model", "64",
         "--nhead", "4", "--num-layers", "2"], project)

    run([REPO / "egs" / "custom" / "prepare.sh", "--corpus", voice, "--language", "ja", "--codec-weights", "random"],
        project)
    tokenized = project / "data" / "tokenized"
    cuts = [c for part in ("train", "dev", "test") for c in open_cuts(tokenized / f"cuts_{part}.jsonl.gz")]
    assert sorted(c.supervisions[0].text for c in cuts) == sorted(SENTENCES)
    tok = get_tokenizer("vallex")
    for cut in cuts:
        sup = cut.supervisions[0]
        assert sup.language == "ja"
        assert sup.custom["text_ids"] == tok.encode(sup.text, "ja").ids
        assert sup.custom["text_langs"] == [LANGUAGE_IDS["ja"]] * len(sup.custom["text_ids"])
    with open(project / "data" / "rejected.tsv", encoding="utf-8") as f:
        rejected = [row for row in csv.reader(f, delimiter="\t") if row and row[0].endswith(".wav")]
    assert len(rejected) == 1 and rejected[0][0].endswith("utt12.wav"), rejected
    assert "g2p failed" in "\t".join(rejected[0]) and "'😀' (U+1F600)" in "\t".join(rejected[0])

    fast = ["--device", "cpu", "--num-workers", "0", "--max-steps", "2", "--valid-interval", "2", "--adapter", "none"]
    run([REPO / "egs" / "custom" / "train.sh", "--model-name", "ar", "--init-checkpoint", "init-tiny.pt", *fast],
        project)
    run([REPO / "egs" / "custom" / "train.sh", "--model-name", "nar", *fast], project)
    checkpoint = project / "exp" / "nar" / "best-valid-loss.pt"

    prompt_text = SENTENCES[2]
    run([sys.executable, "-m", "valle", "make-prompt", "--audio", voice / "utt02.wav", "--text", prompt_text,
         "--language", "ja", "--codec-weights", "random", "--checkpoint", checkpoint, "--output", "ja.npz"], project)
    preset = np.load(project / "ja.npz")
    assert int(preset["lang_code"]) == 1  # the released presets' code for Japanese
    assert preset["text_tokens"].tolist() == [tok.encode(prompt_text, "ja").ids]
    run([sys.executable, "-m", "valle", "infer", "--checkpoint", checkpoint, "--text", "ありがとうございます。",
         "--language", "ja", "--prompt-preset", "ja.npz", "--codec-weights", "random", "--max-frames", "30",
         "--output", "out.wav"],
        project)
    assert (project / "out.wav").stat().st_size > 44

    # CER per character after normalisation: the ground truth "heard" without punctuation and in full-width
    # digits (no error), each synthesis heard with one character wrong
    test_cuts = sorted(open_cuts(tokenized / "cuts_test.jsonl.gz"), key=lambda c: c.id)
    lines, chars = [], {}
    for c in test_cuts:
        text = c.supervisions[0].text
        plain = text.replace("、", "").replace("。", "").translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        lines.append(f"wavs/ground_truth/{c.id}.wav\t{plain}")
        lines.append(f"wavs/nar-best-valid-loss/{c.id}.wav\tX{plain[1:]}")
        chars[f"{c.id}"] = len(plain)
    (project / "heard.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run([sys.executable, "-m", "valle", "evaluate", "--checkpoint", checkpoint, "--prompt", "preset", "ja.npz",
               "--num-utterances", "0", "--codec-weights", "random", "--device", "cpu", "--speaker-model", "none",
               "--asr-transcripts", "heard.tsv", "--max-frames", "30", "--baseline", "none"], project)
    report = json.loads((project / "exp" / "eval" / "report.json").read_text())
    assert report["error_unit"] == "CER", out.stdout
    truth, synthesis = report["systems"]
    assert truth["metrics"]["error_rate"]["mean"] == 0.0
    rows = [r.split("\t") for r in (project / "exp" / "eval" / "utterances.tsv").read_text().splitlines()]
    scored = [dict(zip(rows[0], r)) for r in rows[1:] if r[0] == "nar-best-valid-loss"]
    assert {r["utterance"]: (int(r["errors"]), int(r["ref_units"])) for r in scored} == {
        cut_id: (1, n) for cut_id, n in chars.items()}
    assert synthesis["metrics"]["error_rate"]["mean"] == pytest.approx(np.mean([1 / n for n in chars.values()]))
