#!/usr/bin/env python3
"""One prepared check of every CUDA path, with figures: `make gpu-check` on a GPU machine (a few minutes),
`make gpu-check ARGS="--device cpu --tiny"` in CI (so that the script cannot rot).

On a machine with only torch preinstalled it first installs the wheels of `.whl/` (made by `make gpu-wheels`
on a machine with a package index) into `.whl/site` with `pip install --no-index --no-deps --target`.
Then, one JSON line per figure on stdout (and in --out):
  cuda_tests   the tests marked `cuda` (pytest)
  train_step   full-size AR/NAR training steps: bf16 autocast + ScaledAdam, fp16 + GradScaler, AR bf16 + torch.compile:
               step time, audio frames/s, peak CUDA memory, FLOPs (counted) and MFU
  generate     batch 1 and 16, eager / CUDA graph / inductor AR step, bf16: AR frames/s, step ms, NAR s per audio s,
               RTF, peak memory (bench/generate_speed.py)
  codec        Encodec encoding throughput, seconds of audio per second
  serve        the speech API under 1 and 16 clients and a streamed 3-sentence input (bench/serve_load.py): AR
               frames/s, p50/p95 latency, time to first audio
  ddp          a 1-GPU torchrun DDP run of bin/trainer.py on a small prepared corpus
  resume       a CUDA run resumed on the CPU and then on CUDA again
Every line has "check", "ok" and "seconds"; a failed check has "error" and the script exits 1 after the others ran.
A summary table goes to stderr at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
SITE = WHEELS / "site"
# What the checks import beyond the GPU machine's preinstalled torch, numpy, h5py, tensorboard, safetensors, hub.
NEEDED = ("lhotse", "urllib3", "encodec", "soundfile", "eng_to_ipa", "inflect", "unidecode", "pypinyin", "jieba",
          "cn2an", "pytest", "yaml", "tqdm", "fastapi", "uvicorn", "python_multipart", "httpx")
PEAK_TFLOPS = {"H200": 989, "H100": 989, "H800": 989, "A100": 312, "A800": 312, "L40S": 362, "L4": 121,
               "A10G": 125, "A10": 125, "RTX 4090": 165, "V100": 125}  # dense bf16/fp16 tensor-core peaks


def ensure_dependencies() -> dict:
    """Install .whl/*.whl into .whl/site when something in NEEDED is missing; put .whl/site on the path."""
    if SITE.is_dir():
        sys.path.insert(0, str(SITE))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if not missing:
        return {"installed_wheels": 0}
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"missing modules {missing} and no wheels in {WHEELS}: run `make gpu-wheels` on a "
                           "machine with a package index and copy .whl/ here")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target",
                    str(SITE), *map(str, wheels)], check=True)
    if str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()
    still = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if still:
        raise RuntimeError(f"modules {still} are still missing after installing {len(wheels)} wheels from {WHEELS}")
    return {"installed_wheels": len(wheels), "missing_before": missing}


# ------------------------------------------------------------------------------------------------ checks


def check_cuda_tests(args) -> list[dict]:
    files = sorted(str(p) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest -m cuda failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return [{"files": len(files), "summary": tail[0]}]


def bucketed_batch(batch: int, frames: int, text: int, device) -> dict:
    """A batch as the bucketing sampler makes it: lengths within 10% of each other (about 5% padding)."""
    import torch

    from valle.config import NUM_QUANTIZERS

    g = torch.Generator().manual_seed(0)
    b = {"text_tokens": torch.randint(5, 70, (batch, text), generator=g),  # (B, L)
         "text_lens": torch.linspace(text, int(text * 0.9), batch).long(),  # (B,)
         "text_langs": torch.zeros(batch, text, dtype=torch.long),  # (B, L)
         "codes": torch.randint(0, 1024, (batch, frames, NUM_QUANTIZERS), generator=g),  # (B, T, 8)
         "code_lens": torch.linspace(frames, int(frames * 0.9), batch).long()}  # (B,)
    return {k: v.to(device) for k, v in b.items()}


def peak_flops(device: str, override: float | None) -> float | None:
    import torch

    if override:
        return override * 1e12
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS.items() if key in name), None)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def train_step(args, half: str, dtype_name: str, compile: bool) -> dict:
    """Median time of full training steps (autocast forward, backward, ScaledAdam) on a bucketed batch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from valle.config import ModelConfig, OptimConfig
    from valle.models.valle import VALLE
    from valle.training.optim import build_optimizer
    from valle.training.objective import Objective

    dev, dtype = args.device, getattr(torch, dtype_name)
    torch.manual_seed(0)
    size = dict(d_model=64, nhead=4, num_layers=2) if args.tiny else {}
    model = VALLE(ModelConfig(**size)).place(dev, (half,)).train()  # as the trainer: the other half in host memory
    named = model.half_named_parameters(half)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in named:
        p.requires_grad_(True)
    opt = build_optimizer(named, OptimConfig())
    scaler = torch.amp.GradScaler(torch.device(dev).type, enabled=dtype == torch.float16)
    objective = Objective(model, half)
    if compile:
        objective.compile()
    b, frames, text = (4, 60, 12) if args.tiny else (args.train_batch, args.train_frames, args.train_frames // 5)
    batch = bucketed_batch(b, frames, text, dev)

    def fwd_bwd(objective):
        with torch.autocast(torch.device(dev).type, dtype=dtype, enabled=dtype != torch.float32):
            loss = objective(batch)["loss"]
        scaler.scale(loss).backward()
        return loss

    def step():
        loss = fwd_bwd(objective)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    for _ in range(3):
        loss = step()
    sync(dev)
    warmup_s = time.perf_counter() - t0
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(args.train_steps):
        t0 = time.perf_counter()
        loss = step()
        sync(dev)
        times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{half} {dtype_name}: loss {float(loss)}")
    counter = FlopCounterMode(display=False)
    with counter:
        fwd_bwd(Objective(model, half))  # counted eagerly: the same FLOPs, compiled or not
    opt.zero_grad(set_to_none=True)
    step_s, audio_frames = statistics.median(times), int(batch["code_lens"].sum())
    flops, peak = counter.get_total_flops(), peak_flops(dev, args.peak_tflops)
    out = {"half": half, "dtype": dtype_name, "compile": compile, "optimizer": "scaled_adam", "batch": b,
           "frames": frames, "text": text, "padding": round(1 - audio_frames / (b * frames), 3),
           "step_s": round(step_s, 4), "audio_frames_per_s": round(audio_frames / step_s, 1),
           "warmup_s": round(warmup_s, 2), "tflops_per_step": round(flops / 1e12, 3),
           "mfu": round(flops / step_s / peak, 4) if peak else None, "loss": round(float(loss), 3)}
    if dev.startswith("cuda"):
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
    return out


def check_train_step(args) -> list[dict]:
    import torch

    rows = [("ar", "bfloat16", False), ("nar", "bfloat16", False), ("ar", "float16", False)]
    if args.device.startswith("cuda"):
        rows.append(("ar", "bfloat16", True))  # compiling fwd + bwd takes a minute or two: one half only
    out = []
    for row in rows:
        out.append(train_step(args, *row))
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()  # the previous model and optimizer are gone: their memory is not counted next
    return out


def check_generate(args) -> list[dict]:
    import torch

    from bench.generate_speed import run
    from valle.config import ModelConfig
    from valle.models.valle import VALLE

    cuda = args.device.startswith("cuda")
    torch.manual_seed(0)
    size = dict(d_model=64, nhead=4, num_layers=2) if args.tiny else {}
    dtype = "bfloat16" if cuda else "float32"
    model = VALLE(ModelConfig(**size)).to(args.device).eval().to(getattr(torch, dtype))
    opts = argparse.Namespace(device=args.device, frames=30 if args.tiny else 150, no_cache=False, dtype=dtype)
    modes = ["eager", "cudagraph", "inductor"] if cuda else ["eager"]
    rows = []
    with torch.inference_mode():
        for batch in (1, 16) if not args.tiny else (1, 4):
            for mode in modes:
                rows.append(run(model, batch, mode, opts))
    return rows


def check_codec(args) -> list[dict]:
    import torch

    from bench.codec_throughput import run, utterances
    from valle.audio import SAMPLE_RATE, Codec

    waves = utterances(2 if args.tiny else 24, seed=0)
    seconds = sum(w.numel() for w in waves) / SAMPLE_RATE
    codec = Codec.from_weights("random", device=args.device)
    run(codec, waves[:1], batched=True)  # warm-up
    rows = []
    for batched in (False, True):  # one file per call; batches of the device's default size
        wall = run(codec, waves, batched=batched)
        rows.append({"batched": batched, "max_batch_seconds": codec.max_batch_seconds if batched else None,
                     "audio_seconds": round(seconds, 1), "audio_seconds_per_second": round(seconds / wall, 1)})
    del codec
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


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
    return [str(REPO / "bin" / "trainer.py"), "--manifest-dir", str(data), "--exp-dir", str(exp),
            "--device", device, "--init-checkpoint", "none", "--d-model", "64", "--nhead", "4", "--num-layers", "2",
            "--num-workers", "0", "--max-duration", "8", "--num-buckets", "2", "--log-interval", "1",
            "--valid-interval", "1000", "--model-name", "ar", *extra]


def steps_logged(exp: Path) -> list[int]:
    lines = (exp / "log" / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r.get("split") == "train"]


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    return folder


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


def check_serve(args) -> list[dict]:
    frames = "24" if args.tiny else "150"
    cmd = [sys.executable, str(REPO / "bench" / "serve_load.py"), "--model", "tiny" if args.tiny else "full",
           "--device", args.device, "--work", str(args.work / "serve"), "--scenarios", "throughput", "ttfa",
           "--clients", "1", "16", "--requests-per-client", "1", "--frames", frames, "--repeats", "1"]
    proc = run_command(cmd, timeout=420)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    keep = ("scenario", "clients", "latency_p50_s", "latency_p95_s", "ar_frames_per_s", "ar_speedup_vs_one_client",
            "first_sentence_alone_s", "three_sentences_streamed_first_audio_s", "ratio")
    return [{k: r[k] for k in keep if k in r} for r in rows]


CHECKS = {"cuda_tests": check_cuda_tests, "train_step": check_train_step, "generate": check_generate,
          "codec": check_codec, "serve": check_serve, "ddp": check_ddp, "resume": check_resume}


# ------------------------------------------------------------------------------------------------ driver


def summary(records: list[dict]) -> str:
    keys = ("half", "dtype", "compile", "batch", "decode", "step_s", "audio_frames_per_s", "mfu", "ar_frames_per_s",
            "ar_step_ms", "rtf", "peak_cuda_mb", "peak_gpu_mb", "batched", "audio_seconds_per_second", "summary",
            "legs", "wall_s", "scenario", "clients", "latency_p50_s", "ratio", "error")
    lines = [f"{'check':<11} {'ok':<4} {'s':>6}  figures"]
    for r in records:
        figures = ", ".join(f"{k}={r[k]}" for k in keys if r.get(k) is not None)
        lines.append(f"{r['check']:<11} {'ok' if r['ok'] else 'FAIL':<4} {r['seconds']:>6}  {figures[:200]}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (CI) [cuda]")
    p.add_argument("--tiny", action="store_true", help="a tiny model and little data (CI on a CPU)")
    p.add_argument("--only", nargs="+", choices=list(CHECKS), default=list(CHECKS), help="run only these checks")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="checks not started within this many seconds are reported as skipped [480]")
    p.add_argument("--train-batch", type=int, default=8, help="full-size training batch: utterances [8]")
    p.add_argument("--train-frames", type=int, default=750, help="full-size training batch: longest, frames [750]")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps (median) [5]")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak for MFU [by name]")
    p.add_argument("--out", default=None, help="also write the JSON lines to this file")
    p.add_argument("--work", default=None, help="folder for the generated corpus and runs [a temporary one]")
    args = p.parse_args()
    start = time.perf_counter()
    records: list[dict] = []
    out = open(args.out, "w") if args.out else None

    def emit(record: dict) -> None:
        records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    t0 = time.perf_counter()
    try:
        deps = ensure_dependencies()
        emit({"check": "wheels", "ok": True, "seconds": round(time.perf_counter() - t0, 1), **deps})
    except Exception as e:  # nothing else can run without the dependencies
        emit({"check": "wheels", "ok": False, "seconds": round(time.perf_counter() - t0, 1), "error": str(e)})
        print(summary(records), file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    import torch

    from bench.machine import machine

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (use --device cpu --tiny on a CPU)", file=sys.stderr)
        return 2
    emit({"check": "machine", "ok": True, "seconds": 0.0, "device": args.device, "tiny": args.tiny,
          "machine": machine(args.device), "cuda": torch.version.cuda})
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        args.work = Path(args.work or tmp)
        args.work.mkdir(parents=True, exist_ok=True)
        for name in args.only:
            if time.perf_counter() - start > args.budget_s:
                emit({"check": name, "ok": False, "seconds": 0.0,
                      "error": f"skipped: --budget-s {args.budget_s} spent"})
                continue
            t0 = time.perf_counter()
            try:
                rows = CHECKS[name](args)
                seconds = round(time.perf_counter() - t0, 1)
                for row in rows:
                    emit({"check": name, "ok": True, "seconds": seconds, **row})
            except Exception as e:
                tb = traceback.format_exc()
                print(tb, file=sys.stderr)
                emit({"check": name, "ok": False, "seconds": round(time.perf_counter() - t0, 1),
                      "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"})
    total = round(time.perf_counter() - start, 1)
    print(summary(records) + f"\ntotal {total} s", file=sys.stderr)
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
