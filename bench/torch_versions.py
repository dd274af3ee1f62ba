#!/usr/bin/env python3
"""Two torch versions on the same machine, in the same run: generation at batch 1 and 16, the training step and
Encodec encoding (the codes stage).

Each interpreter (a venv with the toolkit's dependencies and one torch/torchaudio pair) runs
bench/generate_speed.py, bench/train_throughput.py and bench/codec_throughput.py; the versions alternate,
--rounds times, so that a change of machine load touches both alike. Prints every JSON line the benchmarks print,
tagged with "python" and "round", then one summary line per version (medians over rounds). Asserts nothing.

    python bench/torch_versions.py --python .venv/bin/python /tmp/venv-t211/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# (name, script, args, the figure the summary keeps)
CASES = (
    ("generate_b1", "generate_speed.py", ["--batch", "1", "--frames", "150"], "ar_frames_per_s"),
    ("generate_b16", "generate_speed.py", ["--batch", "16", "--frames", "150"], "ar_frames_per_s"),
    ("train_ar", "train_throughput.py", ["--half", "ar", "--batch", "4", "--frames", "300", "--steps", "4",
                                         "--untrained-half", "device"], "frames_per_s"),
    ("codec", "codec_throughput.py", ["--num-utterances", "12", "--batch-seconds", "15", "--threads", "1"],
     "audio_seconds_per_second"),
)


def run_case(python: str, script: str, args: list[str]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([python, str(BENCH / script), *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"{python} {script} failed:\n{proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", nargs="+", required=True, help="interpreters to compare, each with its own torch")
    p.add_argument("--rounds", type=int, default=2, help="times each version runs every case, alternating")
    args = p.parse_args()
    figures: dict[tuple[str, str], list[float]] = {}
    versions = {}
    for rnd in range(args.rounds):
        for name, script, case_args, key in CASES:
            for python in args.python:
                for line in run_case(python, script, case_args):
                    versions[python] = line["machine"]["torch"] if "machine" in line else versions.get(python)
                    figures.setdefault((python, name), []).append(line[key])
                    print(json.dumps({"python": python, "round": rnd, "case": name, **line}), flush=True)
    for python in args.python:
        summary = {name: round(median(figures[python, name]), 2) for name, *_ in CASES}
        print(json.dumps({"summary": versions[python], "python": python, **summary}), flush=True)


if __name__ == "__main__":
    main()
