"""The toolkit's programs end to end on the device, for bench/gpu_check.py: a small corpus prepared by the custom
recipe (random Encodec), then `codes_sharded` (valle prepare codes under torchrun with 2 worker processes on one
device, compared with one process's codes), `ddp` (a 1-GPU torchrun run of valle train), `resume` (a run resumed
on the CPU, then on the device again) and `serve` (bench/serve_load.py: 1 and 16 clients, a streamed 3-sentence
input). Each `check_*(args)` returns its rows or raises with what went wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_corpus(folder: Path, n: int = 24) -> None:
    """n speech-like recordings of 1-3 s (harmonics under a syllable envelope) with English transcripts."""
    import numpy as np
    import soundfile as sf

    words = "the quick brown fox jumps over a lazy dog while seven bright stars watch quietly".split()
    rng = np.random.default_rng(0)
    for i in range(n):
        rate, seconds, f0 = 24000, 1.0 + 2.0 * i / n, 100 + 5 * i
        t = np.arange(int(seconds * rate)) / rate
        wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8)) * (0.6 + 0.4 * np.sin(6 * np.pi * t))
        sf.write(str(folder / f"utt{i:03d}.wav"), (0.2 * wave).astype(np.float32), rate)
        text = " ".join(rng.choice(words, size=3 + i % 5))
        (folder / f"utt{i:03d}.txt").write_text(text.capitalize() + ".")


def prepare_data(args, work: Path) -> Path:
    """The custom recipe on a generated corpus, random Encodec -> the tokenized folder."""
    data = work / "data"
    if not (data / "tokenized" / "cuts_train.jsonl.gz").is_file():
        corpus = work / "corpus" / "spk1"
        corpus.mkdir(parents=True, exist_ok=True)
        write_corpus(corpus)
        run_command([str(REPO / "egs" / "custom" / "prepare.sh"), "--corpus", str(corpus.parent), "--language", "en",
                     "--codec-weights", "random", "--data-dir", str(data), "--device", args.device.split(":")[0],
                     "--dev-ratio", "0.15", "--test-ratio", "0.05"], timeout=300)
    return data / "tokenized"


def run_command(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    # the recipes and CLIs run with this Python and must import the toolkit without an install
    env = {**os.environ, "PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def trainer_args(data: Path, exp: Path, device: str, *extra: str) -> list[str]:
    return ["-m", "valle", "train", "--manifest-dir", str(data), "--exp-dir", str(exp),
            "--device", device, "--init-checkpoint", "none", "--d-model", "64", "--nhead", "4", "--num-layers", "2",
            "--num-workers", "0", "--max-duration", "8", "--num-buckets", "2", "--log-interval", "1",
            "--valid-interval", "1000", "--model-name", "ar", *extra]


def steps_logged(exp: Path) -> list[int]:
    lines = (exp / "log" / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r.get("split") == "train"]


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def stored_codes(tokenized: Path) -> dict:
    """cut id -> its codes (frames, 8), over every part's codes manifest of a tokenized folder."""
    from valle.data.files import open_cuts

    return {c.id: c.load_codes() for m in sorted(tokenized.glob("cuts_*_codes.jsonl.gz")) for c in open_cuts(m)}


def check_codes_sharded(args) -> list[dict]:
    """The codes stage again on a copy of the prepared data, under torchrun with --num-workers 2 on the device:
    every cut's codes must equal those of the one-process run of prepare_data."""
    data = prepare_data(args, args.work).parent
    copy = fresh(args.work / "data-sharded")
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("tokenized", ".codes.done", ".text.done", ".split.done",
                                                              ".lock"))
    t0 = time.perf_counter()
    run_command([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                 "-m", "valle", "prepare", "codes", "--data-dir", str(copy), "--num-workers", "2",
                 "--device", args.device.split(":")[0], "--codec-weights", "random"], timeout=300)
    seconds = time.perf_counter() - t0
    one, sharded = stored_codes(data / "tokenized"), stored_codes(copy / "tokenized")
    if one.keys() != sharded.keys():
        raise RuntimeError(f"sharded codes for {len(sharded)} cuts, one process for {len(one)}")
    differ = [k for k in one if not (one[k] == sharded[k]).all()]
    if differ:
        raise RuntimeError(f"{len(differ)} of {len(one)} cuts have other codes than one process's, e.g. {differ[0]}")
    shards = sorted(p.name for p in (copy / "tokenized").glob("codes_*-of-*.h5"))
    return [{"cuts": len(one), "shards": len(shards), "identical": True, "wall_s": round(seconds, 1)}]


def check_serve(args) -> list[dict]:
    """bench/serve_load.py on the device: throughput at 1 and 16 clients, time to first audio of a streamed input."""
    frames = "24" if args.tiny else "150"
    cmd = [sys.executable, str(REPO / "bench" / "serve_load.py"), "--model", "tiny" if args.tiny else "full",
           "--device", args.device, "--work", str(fresh(args.work / "serve")), "--scenarios", "throughput", "ttfa",
           "--clients", "1", "16", "--requests-per-client", "1", "--frames", frames, "--repeats", "1"]
    rows = [json.loads(line) for line in run_command(cmd, timeout=420).stdout.splitlines() if line.startswith("{")]
    keep = ("scenario", "clients", "latency_p50_s", "latency_p95_s", "ar_frames_per_s", "ar_speedup_vs_one_client",
            "first_sentence_alone_s", "three_sentences_streamed_first_audio_s", "ratio")
    return [{k: r[k] for k in keep if k in r} for r in rows]


def check_ddp(args) -> list[dict]:
    data = prepare_data(args, args.work)
    exp = fresh(args.work / "exp-ddp")
    device = args.device.split(":")[0]
    t0 = time.perf_counter()
    run_command([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                 *trainer_args(data, exp, device, "--max-steps", "4")], timeout=300)
    steps = steps_logged(exp)
    if steps[-1:] != [4]:
        raise RuntimeError(f"torchrun run logged steps {steps}, expected up to 4")
    return [{"world_size": 1, "backend": "nccl" if device == "cuda" else "gloo", "steps": len(steps),
             "wall_s": round(time.perf_counter() - t0, 1)}]


def check_resume(args) -> list[dict]:
    data = prepare_data(args, args.work)
    exp = fresh(args.work / "exp-resume")
    device = args.device.split(":")[0]
    legs = [(device, 2, []), ("cpu", 4, ["--resume", "true"]), (device, 6, ["--resume", "true"])]
    for dev, steps, extra in legs:
        run_command([sys.executable, *trainer_args(data, exp, dev, "--max-steps", str(steps), "--save-every-n", "2",
                                                   *extra)], timeout=300)
    steps = steps_logged(exp)
    if steps != list(range(1, 7)):
        raise RuntimeError(f"{device} -> cpu -> {device} logged steps {steps}, expected 1..6 once each")
    return [{"legs": " -> ".join(d for d, _, _ in legs), "steps": steps[-1]}]
