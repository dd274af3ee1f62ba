#!/usr/bin/env python3
"""The ONNX Runtime engine against torch fp32: AR frames/s, prefill, step, NAR time per audio second, RTF and peak
memory (bench/generate_speed.py's measurements, same work), one JSON line per engine and batch size; asserts nothing.

Each line comes from a process of its own, so its peak RSS is that engine's: load_peak_rss_mb while loading,
peak_rss_mb while speaking (the loaded model and what speaking adds: the count restarts once loaded, as in
generate_speed). The engines alternate within each round (torch fp32, onnxruntime fp32, onnxruntime int8, then
again), so a load that comes and goes on the machine is shared among them; then one summary line per engine
(medians over the rounds, and their ratios to the first engine's). The model is the full-size released config with
random weights (seed 0, as generate_speed), exported once to --workdir (fp32/ and int8/; an existing export of the
same model in this format is reused).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.generate_speed import build_model, run  # noqa: E402
from bench.machine import machine  # noqa: E402

ENGINES = ("torch-fp32", "onnxruntime-fp32", "onnxruntime-int8")
SUMMARY = ("ar_frames_per_s", "ar_prefill_s", "ar_step_ms", "nar_s_per_audio_s", "rtf", "load_peak_rss_mb",
           "peak_rss_mb")


def export_once(workdir: Path, precision: str) -> Path:
    """workdir/precision holding the export of the seed-0 full-size model (made now unless already there)."""
    from valle.onnx_engine.export import export, holds_export

    folder = workdir / precision
    model = build_model(argparse.Namespace(checkpoint=None, device="cpu", precision="fp32"))
    if holds_export(folder, model, precision):
        return folder
    t0 = time.perf_counter()
    export(model, folder, precision=precision)
    print(json.dumps({"export": precision, "seconds": round(time.perf_counter() - t0, 1),
                      "mb": {f.name: round(f.stat().st_size / 2**20, 1) for f in folder.glob("*.onnx")}}), flush=True)
    return folder


def peak_rss_mb() -> float:
    """This process's peak RSS since it started or since bench.machine.reset_peak_rss (VmHWM: getrusage's figure
    would include the parent's memory at the fork)."""
    status = Path("/proc/self/status").read_text()
    return round(int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:"))) / 1024, 1)


def worker(args) -> None:
    """One engine, one batch size: its JSON line."""
    engine, precision = args.worker.split("-")
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = argparse.Namespace(checkpoint=None, device="cpu", engine=engine, precision="fp32", frames=args.frames,
                              no_cache=False, ar_only=False)
    if engine == "torch":
        model = build_model(opts)
    else:
        from valle.onnx_engine.runtime import OnnxVALLE

        model = OnnxVALLE.load(args.workdir / precision)
    load_peak = peak_rss_mb()
    with torch.inference_mode():
        line = run(model, args.batch[0], "eager", opts)
    line |= {"config": f"batch {args.batch[0]}, {engine} {precision}", "engine": engine, "precision": precision,
             "threads": torch.get_num_threads(), "device": "cpu", "machine": machine("cpu")}
    line |= {"load_peak_rss_mb": load_peak, "peak_rss_mb": peak_rss_mb()}
    del line["decode"], line["kv_cache"]
    print(json.dumps(line), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=150, help="frames generated per item (75 per second) [150]")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes, one JSON line each [1]")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES), help="what to time [all]")
    p.add_argument("--rounds", type=int, default=1, help="times every engine is timed, alternating [1]")
    p.add_argument("--workdir", type=Path, default=Path("exp/onnx_bench"), help="where the exports go")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of torch and ONNX Runtime [torch's]")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.frames < 2:
        p.error("--frames must be at least 2")
    if args.worker:
        return worker(args)
    for precision in sorted({e.split("-")[1] for e in args.engines if e.startswith("onnxruntime")}):
        export_once(args.workdir, precision)
    lines: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.rounds):
        for batch in args.batch:
            for engine in args.engines:
                cmd = [sys.executable, __file__, "--worker", engine, "--batch", str(batch), "--frames",
                       str(args.frames), "--workdir", str(args.workdir)]
                out = subprocess.run(cmd + (["--threads", str(args.threads)] if args.threads else []), check=True,
                                     stdout=subprocess.PIPE, text=True).stdout
                line = json.loads(out.splitlines()[-1])
                print(json.dumps(line), flush=True)
                lines.setdefault((engine, batch), []).append(line)
    reference = lines[args.engines[0], args.batch[0]]  # the first engine at the first batch size
    for (engine, batch), rows in lines.items():
        print(json.dumps(summary(engine, batch, rows, lines[args.engines[0], batch], reference)), flush=True)


def summary(engine: str, batch: int, rows: list[dict], base: list[dict], reference: list[dict]) -> dict:
    """Medians over the rounds of one engine and batch size, their ratios to the first engine's at this batch size,
    the AR frames/s against the first engine's at the first batch size (the issue's "reference batch 1"), the
    loads."""
    med = {k: median(r[k] for r in rows) for k in SUMMARY}
    return {"summary": f"batch {batch}, {engine}", "rounds": len(rows), **med,
            **{f"{k}_vs_first": round(v / median(r[k] for r in base), 3) for k, v in med.items()},
            "ar_frames_per_s_vs_reference": round(med["ar_frames_per_s"] /
                                                  median(r["ar_frames_per_s"] for r in reference), 3),
            "load_avg_1min": [r["machine"]["load_avg_1min"] for r in rows]}


if __name__ == "__main__":
    main()
