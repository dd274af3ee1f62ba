#!/usr/bin/env python3
"""Corpora of any size (docs/scale.md). Prints one JSON line per configuration, with the machine; asserts nothing.

  startup  trainer start-up (process start to the first training step) and peak memory (PSS of the trainer and
           its 2 loader workers) on synthetic manifests of 10k, 100k and 1M cuts (valle/data/synthetic.py).
           --code DIR runs the trainer of another checkout (e.g. `git archive main | tar -x -C DIR`: the eager
           "before").
  codes    code extraction throughput (hours of audio per hour), 1 vs 2 worker processes, on a LibriTTS-layout
           corpus made with espeak-ng (egs/mini/make_corpus.py --layout libritts; random Encodec weights).
  disk     bytes per hour of prepared audio: jsonl + HDF5 vs Shar, with and without FLAC audio (same corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.machine import machine  # noqa: E402

TINY = ["--d-model", "64", "--nhead", "4", "--num-layers", "2"]


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of `pid` and its descendants (shared pages counted once over them), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue  # the process ended meanwhile
    return total / 1024


def startup(data: Path, code: Path, timeout: float) -> dict:
    """Start the trainer of `code` on `data`; seconds until it logs its first training step, peak PSS till then."""
    exp = data.parent / f"exp-{data.name}"
    shutil.rmtree(exp, ignore_errors=True)
    cmd = [sys.executable, "-m", "valle", "train", "--manifest-dir", str(data), "--exp-dir", str(exp),
           "--device", "cpu", "--num-workers", "2", "--init-checkpoint", "none", *TINY, "--codec-weights", "none",
           "--max-steps", "1", "--log-interval", "1", "--valid-interval", "1000"]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, first_step, metrics = 0.0, None, exp / "log" / "metrics.jsonl"
    while proc.poll() is None and time.perf_counter() - start < timeout:
        peak = max(peak, tree_pss_mb(proc.pid))
        if metrics.is_file() and '"split": "train"' in metrics.read_text():
            first_step = time.perf_counter() - start
            break
        time.sleep(0.05)
    proc.kill()
    err = proc.communicate()[1]
    shutil.rmtree(exp, ignore_errors=True)
    if first_step is None and proc.returncode not in (None, -9):
        raise SystemExit(f"the trainer failed: {err[-2000:]}")
    return {"seconds_to_first_step": round(first_step, 1) if first_step else f">{timeout:.0f}",
            "peak_pss_mb": round(peak)}


def bench_startup(args) -> None:
    from valle.data.synthetic import write_synthetic

    for n in args.sizes:
        data = args.work / f"synthetic-{n}"
        if not (data / "text_tokenizer.json").is_file():  # written last: a whole data set
            t = time.perf_counter()
            write_synthetic(data, n)
            print(f"# wrote {n} synthetic cuts in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        result = startup(data, args.code, args.timeout)
        print(json.dumps({"bench": "startup", "code": str(args.code), "cuts": n,
                          "manifest_mb": round((data / "cuts_train.jsonl.gz").stat().st_size / 1e6, 1),
                          **result, "machine": machine("cpu")}), flush=True)


def run(cmd: list[str], **kw) -> None:
    """`cmd` as a user runs it: torch picks its threads (no OMP_NUM_THREADS), PATH has the environment's bin/."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def prepared(args) -> Path:
    """A LibriTTS-layout corpus of about args.minutes of audio, through egs/libritts stages 0-1 (manifests,
    normalize): the data folder, ready for the codes stage."""
    per_speaker = max(1, round(args.minutes * 60 / 4.0 / 12))  # about 4 s an utterance, 3 parts x 4 speakers
    corpus, data = args.work / "libritts", args.work / "libritts-data"
    if not (data / "manifests").is_dir():
        run([sys.executable, str(REPO / "egs" / "mini" / "make_corpus.py"), "--layout", "libritts",
             "--output", str(corpus), "--per-speaker", str(per_speaker)])
        run([str(REPO / "egs" / "libritts" / "prepare.sh"), "--stage", "0", "--stop-stage", "1", "--download-dir",
             str(corpus), "--data-dir", str(data), "--codec-weights", "random"], cwd=args.work)
    return data


def hours_of(data: Path) -> float:
    return json.loads((data / "summary.json").read_text())["normalize"]["hours"]


def bench_codes(args) -> None:
    data = prepared(args)
    for workers in (1, 2):
        copy = args.work / f"codes-{workers}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(data, copy, ignore=shutil.ignore_patterns("tokenized", ".lock"))
        start = time.perf_counter()
        run([sys.executable, "-m", "valle", "prepare", "codes", "--data-dir", str(copy), "--codec-weights",
             "random", "--device", "cpu", "--num-workers", str(workers)])
        seconds = time.perf_counter() - start
        print(json.dumps({"bench": "codes", "workers": workers, "audio_hours": hours_of(data),
                          "seconds": round(seconds, 1), "hours_per_hour": round(hours_of(data) * 3600 / seconds, 1),
                          "machine": machine("cpu")}), flush=True)


def folder_bytes(*paths: Path) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def bench_disk(args) -> None:
    data = args.work / "codes-2"  # the codes benchmark's output
    run([str(REPO / "egs" / "libritts" / "prepare.sh"), "--stage", "4", "--data-dir", str(data),
         "--download-dir", str(args.work / "libritts"), "--codec-weights", "random"], cwd=args.work)
    hours, tokenized = hours_of(data), data / "tokenized"
    final = [*tokenized.glob("cuts_train.jsonl.gz"), *tokenized.glob("cuts_dev.jsonl.gz"),
             *tokenized.glob("cuts_test.jsonl.gz"), *tokenized.glob("codes_*.h5")]
    audio = folder_bytes(data / "audio") + sum(  # referenced sources count as the corpus's audio
        Path(c).stat().st_size for c in _sources(tokenized) if not str(c).startswith(str(data / "audio")))
    rows = {"jsonl+hdf5": folder_bytes(*final), "jsonl+hdf5 + audio": folder_bytes(*final) + audio}
    for with_audio in ("none", "flac"):
        run([sys.executable, "-m", "valle", "prepare", "shar", "--data-dir", str(data), "--shar-audio",
             with_audio])
        rows["shar" + (" + flac audio" if with_audio == "flac" else "")] = folder_bytes(data / "shar")
    for name, size in rows.items():
        print(json.dumps({"bench": "disk", "format": name, "audio_hours": hours,
                          "mb_per_hour": round(size / 1e6 / hours, 1), "machine": machine("cpu")}), flush=True)


def _sources(tokenized: Path) -> list[str]:
    from valle.data.files import open_cuts

    return [c.recording.sources[0].source for split in ("train", "dev", "test")
            for c in open_cuts(tokenized / f"cuts_{split}.jsonl.gz")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", default=["startup", "codes", "disk"], choices=["startup", "codes", "disk"],
                        help="which benchmarks (disk reuses the codes benchmark's data)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/valle-bench-scale"), help="folder for the data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="startup: train cuts of the synthetic manifests")
    parser.add_argument("--code", type=Path, default=REPO, help="startup: the checkout whose trainer runs")
    parser.add_argument("--timeout", type=float, default=300, help="startup: seconds before a run counts as too slow")
    parser.add_argument("--minutes", type=float, default=60, help="codes/disk: minutes of generated audio")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for what in args.what:
        {"startup": bench_startup, "codes": bench_codes, "disk": bench_disk}[what](args)


if __name__ == "__main__":
    main()
