"""End to end on the mini corpus: two checkpoints compared in one report (random Encodec: both flagged noise,
the espeak-ng ground truth not), transcripts through the ASR backend interface, CLI errors as one line, and
the HTML page rendered by headless Chromium when it is installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from valle.data.files import open_cuts

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the mini corpus")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def evaluated(mini_data, tmp_path_factory):
    """Two tiny random checkpoints evaluated by egs/mini/evaluate.sh in a recipe-like folder."""
    work = tmp_path_factory.mktemp("recipe")
    (work / "data").mkdir()
    (work / "data" / "tokenized").symlink_to(mini_data)
    for seed, half in enumerate(("ar", "nar")):
        r = run([sys.executable, "-m", "valle", "init-checkpoint", "--output", f"exp/{half}/best-valid-loss.pt",
                 "--d-model", "64", "--nhead", "4", "--num-layers", "2", "--seed", str(seed),
                 "--tokenizer-info", "data/tokenized"], work)
        assert r.returncode == 0, r.stderr
    cuts = sorted(open_cuts(mini_data / "cuts_test.jsonl.gz"), key=lambda c: c.id)
    # a transcript source that is what it says: the ground truth "heard" right, every synthesis heard as nothing
    lines = [f"wavs/ground_truth/{c.id}.wav\t{c.supervisions[0].text}" for c in cuts]
    lines += [f"wavs/{label}/{c.id}.wav\t" for label in ("ar-best-valid-loss", "nar-best-valid-loss") for c in cuts]
    (work / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = run([str(REPO / "egs" / "mini" / "evaluate.sh"), "--max-frames", "150", "--asr-transcripts",
             "transcripts.tsv"], work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return work, r.stdout, cuts


@pytest.mark.slow
def test_two_checkpoints_in_one_report(evaluated):
    work, stdout, cuts = evaluated
    out = work / "exp" / "eval"
    report = json.loads((out / "report.json").read_text())
    names = [s["name"] for s in report["systems"]]
    assert names == ["ground_truth", "ar-best-valid-loss", "nar-best-valid-loss"]
    gt, ar, nar = report["systems"]
    n = len(cuts)
    assert report["num_utterances"] == n and gt["utterances"] == n
    assert gt["flagged"] == 0 and gt["metrics"]["error_rate"]["mean"] == 0.0
    for s in (ar, nar):
        assert s["flags"]["noise"] == n, s  # the demo's random codec: noise, always
        assert s["metrics"]["error_rate"]["mean"] == 1.0
        assert "mcd" in s["metrics"] and 0 <= s["eos_rate"] <= 1
    assert "sim_prompt" in gt["metrics"]
    rows = (out / "utterances.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3 * n and rows[0].startswith("system\tutterance")
    for name in names:
        for c in cuts:
            assert (out / "wavs" / name / f"{c.id}.wav").is_file()
    page = (out / "report.html").read_text()
    assert page.count("<audio") == 4 * n  # prompt, ground truth and both checkpoints for every utterance
    assert "ar-best-valid-loss" in page and "nar-best-valid-loss" in page
    assert (out / "metrics.png").stat().st_size > 10_000
    assert "report:" in stdout and "flagged 0/" in stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no headless browser: install Debian's chromium to render the report")
def test_report_renders_in_chromium(evaluated, tmp_path):
    from PIL import Image

    out = evaluated[0] / "exp" / "eval"
    shot = tmp_path / "report.png"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                        "--window-size=1280,1400", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    pixels = Image.open(shot).convert("L")
    assert pixels.size == (1280, 1400)
    assert len(pixels.getcolors(1 << 16)) > 20  # text, tables and the chart: not a blank page


def test_cli_errors_are_one_line(tmp_path):
    r = run([sys.executable, "-m", "valle", "evaluate", "--checkpoint", "missing.pt"], tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --checkpoint missing.pt: no such file (train first, or pass 'vallex')"]
    r = run([sys.executable, "-m", "valle", "evaluate", "--checkpoint", "vallex", "--prompt", "x"], tmp_path)
    assert r.returncode == 2 and "use 'same-speaker' or 'preset FILE.npz'" in r.stderr
    r = run([sys.executable, "-m", "valle", "evaluate", "--checkpoint", "vallex"], tmp_path)
    assert r.returncode == 2 and "no data/tokenized/cuts_test.jsonl.gz" in r.stderr
    r = run([str(REPO / "egs" / "mini" / "evaluate.sh")], tmp_path)
    assert r.returncode == 2 and "no checkpoint in" in r.stderr


def _system(name, sim, wer, flagged, duration_ratio=1.0):
    metric = lambda v: {"mean": v, "ci95": [v, v], "n": 4}  # noqa: E731
    return {"name": name, "utterances": 4, "flagged": flagged, "flags": {}, "eos_rate": 1.0,
            "metrics": {"sim_target": metric(sim), "error_rate": metric(wer), "duration_ratio": metric(duration_ratio)}}


def test_each_column_says_better_or_worse_than_the_baseline(tmp_path, capsys):
    from valle.commands.evaluate import print_summary
    from valle.eval.results import versus, write_html

    base, tuned = _system("vallex", 0.63, 0.10, 1, 1.0), _system("ar-best-eval", 0.61, 0.05, 1, 1.2)
    assert versus(tuned, base) == {"sim_target": "worse", "error_rate": "better", "duration_ratio": "worse",
                                   "flagged": "same"}
    tuned["versus_baseline"] = versus(tuned, base)
    report = {"baseline": "vallex", "systems": [_system("ground_truth", 1.0, 0.0, 0), base, tuned],
              "num_utterances": 4, "cuts": "c", "prompt": "p", "seed": 0, "sampling": {}, "codec_weights": "x",
              "speaker_model": "s", "asr": "a", "thresholds": {"max_duration_ratio": 3.0}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    print_summary(tmp_path / "report.json")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  vallex (baseline): ") and "| vs" not in lines[1]
    assert lines[2].endswith("| vs vallex: better error_rate; worse sim_target, duration_ratio")
    write_html(report, [], tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "vallex (baseline)" in page and page.count('class="better"') == 1 and page.count('class="worse"') == 2


def test_the_baseline_is_where_the_runs_started(tmp_path):
    import argparse

    from valle.commands.evaluate import find_baseline, starting_model
    from valle.config import ModelConfig
    from valle.models.checkpoint import save_checkpoint
    from valle.models.valle import VALLE

    model = VALLE(ModelConfig(d_model=16, nhead=2, num_layers=1))

    def trained_from(path, init):
        return save_checkpoint(tmp_path / path, model,
                               train_state={"experiment": {"train": {"init_checkpoint": str(init)}}})

    init = save_checkpoint(tmp_path / "init.pt", model)  # no training made it: where the runs start
    ar = trained_from("ar.pt", init)
    nar = trained_from("nar.pt", ar)  # the NAR run started from the AR run
    assert starting_model(str(nar)) == starting_model(str(ar)) == str(init)
    assert starting_model(str(trained_from("r.pt", "vallex"))) == "vallex"
    assert starting_model(str(trained_from("s.pt", "none"))) is None  # from scratch: nothing to compare with
    assert starting_model(str(init)) is None
    args = argparse.Namespace(baseline="auto", adapter=None, checkpoint=[str(init), str(nar)])
    assert find_baseline(args) == str(init)
    assert find_baseline(argparse.Namespace(baseline="none", adapter=None, checkpoint=[str(nar)])) is None
    assert find_baseline(argparse.Namespace(baseline="auto", adapter=["a.pt"], checkpoint=["vallex"])) == "vallex"
