"""bench/gpu_check.py on a CPU (`--device cpu --tiny`), so that the GPU check cannot rot between GPU windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_generation_check_writes_json_lines_and_a_summary(tmp_path):
    out = tmp_path / "figures.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--only", "generate", "--out", str(out)], capture_output=True, text=True, env=ENV,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = records(proc.stdout)
    assert lines == records(out.read_text())
    assert [r["check"] for r in lines] == ["wheels", "machine", "generate", "generate"]
    gen = lines[2:]
    assert {r["batch"] for r in gen} == {1, 4} and all(r["ok"] and r["decode"] == "eager" for r in gen)
    for key in ("ar_frames_per_s", "ar_step_ms", "nar_s_per_audio_s", "rtf", "seconds"):
        assert all(r[key] > 0 for r in gen), key
    assert "check         ok" in proc.stderr and "total" in proc.stderr.splitlines()[-1]


def test_cuda_without_a_gpu_is_a_clear_error():
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--only", "generate"],
                          capture_output=True, text=True, env=ENV, timeout=300, cwd=REPO)
    assert proc.returncode == 2 and "error: --device cuda but torch sees no CUDA device" in proc.stderr


@pytest.mark.slow
def test_make_gpu_check_on_cpu_passes_every_check(tmp_path):
    """What CI runs: the GPU script on a CPU with a tiny model, every check but the three whose paths other tests
    already run on the CPU in full (codes_sharded: test_scale's sharded and resumed codes; ddp: test_adapters'
    two-process run; resume: test_trainer's SIGKILL and resume): they cost CI two minutes more."""
    out = tmp_path / "figures.jsonl"
    only = "cuda_tests train_step generate codec serve"  # wheels and machine always run
    proc = subprocess.run(["make", "-s", "gpu-check", f"ARGS=--device cpu --tiny --only {only} --out {out}"],
                          capture_output=True, text=True, env=ENV, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = records(out.read_text())
    assert all(r["ok"] for r in lines), [r for r in lines if not r["ok"]]
    assert {r["check"] for r in lines} == {"wheels", "machine", *only.split()}
    train = [r for r in lines if r["check"] == "train_step"]
    assert {(r["half"], r["dtype"]) for r in train} == {("ar", "bfloat16"), ("nar", "bfloat16"), ("ar", "float16")}
    assert all(r["step_s"] > 0 and r["padding"] <= 0.1 for r in train)
    serve = {(r.get("scenario"), r.get("clients")) for r in lines if r["check"] == "serve"}
    assert {("throughput", 1), ("throughput", 16)} <= serve and any(s == "ttfa" for s, _ in serve)
