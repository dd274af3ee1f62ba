#!/usr/bin/env python3
"""Load on the speech API (valle serve), over loopback only. Prints one JSON line per measurement; asserts nothing.

Scenarios (--scenarios):
- throughput: 1, 4 and 16 clients (--clients), each sending --requests-per-client requests one after another:
  p50/p95 latency, AR frames/s (frames over the time spent in AR steps, from /metrics) and end-to-end audio frames
  per wall second; the last line compares the AR frames/s of each level with one client's.
- ttfa: a 3-sentence input streamed, against its first sentence alone: time to the first audio byte (median of
  --repeats).
- load: --load-requests requests from 16 clients against a server with a small queue (so some get 429), a tenth of
  them bad (unknown voice, empty input, too long). Every answer is checked: valid audio equal, byte for byte, to the
  same request made alone beforehand (greedy, so batching must not change it), or a 4xx/429 with an OpenAI error.
  Nothing may be lost or answered twice (client ids and the server's request counter). The server's RSS is read
  after warm-up and at the end.

--model tiny is tests/data/vallex_tiny; --model full is the released layout (d 1024, 12+12 layers) with random
weights, written once to --work. Audio comes from Encodec with random weights (no download).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.machine import machine  # noqa: E402

SENTENCES = ["The quick brown fox jumps over the lazy dog near the river bank.",
             "She sells sea shells by the sea shore every summer morning.",
             "A journey of a thousand miles begins with one small step forward.",
             "Bright stars filled the quiet sky above the sleeping town tonight."]
FRAME_BYTES = 320 * 2  # pcm: 320 samples of 16 bits per frame
ENGINES = ("torch-fp32", "torch-bf16", "torch-fp16", "torch-int8", "onnxruntime-fp32", "onnxruntime-int8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("tiny", "full"), default="tiny", help="model size [tiny]")
    p.add_argument("--work", default=None, help="folder for the full-size checkpoint and voices [a temp folder]")
    p.add_argument("--scenarios", nargs="+", default=["throughput", "ttfa", "load"],
                   choices=("throughput", "ttfa", "load"), help="what to measure [all]")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="throughput levels [1 4 16]")
    p.add_argument("--requests-per-client", type=int, default=2, help="throughput: requests per client [2]")
    p.add_argument("--frames", type=int, default=48, help="max_frames of each sentence [48]")
    p.add_argument("--prompt-frames", type=int, default=75, help="frames of the voice's (random) prompt [75]")
    p.add_argument("--repeats", type=int, default=3, help="ttfa: measurements of each kind [3]")
    p.add_argument("--load-requests", type=int, default=300, help="load: requests in all [300]")
    p.add_argument("--load-clients", type=int, default=16, help="load: concurrent clients [16]")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server [2]")
    p.add_argument("--device", default="cpu", help="device of the server [cpu]")
    p.add_argument("--timeout", type=float, default=600, help="seconds any one request may take [600]")
    p.add_argument("--engine", nargs="+", choices=ENGINES, default=["torch-fp32"],
                   help="what runs the server's model, ENGINE-PRECISION: torch-fp32/bf16/fp16/int8 (--precision), "
                        "onnxruntime-fp32/int8 (--engine onnxruntime on the checkpoint's export, made once in --work); "
                        "several: each scenario runs once per engine, back to back (a server each) [torch-fp32]")
    return p


# ---- setup


def prepare(a, work: Path) -> tuple[Path, list[str]]:
    """The checkpoint (and its flags) and a voices folder with one voice, 'bench', with a random prompt."""
    import torch

    from valle.inference import Prompt, save_prompt

    if a.model == "tiny":
        checkpoint, flags = REPO / "tests" / "data" / "vallex_tiny" / "tiny.pt", ["--nhead", "4"]
    else:
        checkpoint, flags = work / "full-random.pt", []
        if not checkpoint.is_file():
            from valle.commands.init_checkpoint import main as init_checkpoint

            init_checkpoint(["--output", str(checkpoint)])
    voices = work / "voices"
    voices.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (a.prompt_frames, 8), generator=g)  # (Tp, 8)
    save_prompt(voices / "bench.npz", Prompt(codes, torch.randint(5, 70, (10,), generator=g).tolist(), "en"))
    (voices / "bench.json").write_text(json.dumps({"prompt": "bench.npz", "sampling": {"top_k": 1}}))
    return checkpoint, flags + ["--voices", str(voices)]


def engine_flags(engine: str, checkpoint: Path, flags: list[str], work: Path) -> list[str]:
    """The server's flags for `engine` (ENGINE-PRECISION); an ONNX engine's export of `checkpoint` is written to
    work/onnx-PRECISION unless it holds one of this checkpoint, precision and format already."""
    name, precision = engine.split("-")
    if name == "torch":
        return ["--precision", precision]
    from valle.models.checkpoint import load_model
    from valle.onnx_engine.export import export, holds_export

    nhead = int(flags[flags.index("--nhead") + 1]) if "--nhead" in flags else None
    model, folder = load_model(checkpoint, nhead=nhead)[0], work / f"onnx-{precision}"
    if not holds_export(folder, model, precision):
        export(model, folder, precision=precision)
    return ["--engine", "onnxruntime", "--onnx", str(folder)]


class Server:
    def __init__(self, a, work: Path, checkpoint: Path, flags: list[str], *extra: str):
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "PYTHONPATH": str(REPO)}
        self.log_path = work / "server.log"
        self.log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "valle", "serve", "--checkpoint", str(checkpoint), *flags,
               "--codec-weights", "random", "--device", a.device, "--port", "0",
               "--max-frames", str(max(a.frames, 1)), *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        end = time.monotonic() + 600
        while time.monotonic() < end and self.proc.poll() is None:
            found = re.search(r"listening on (http://\S+)", self.log_path.read_text())
            if found:
                self.url = found.group(1)
                return
            time.sleep(0.3)
        self.stop()
        raise SystemExit("the server did not start:\n" + self.log_path.read_text()[-3000:])

    def rss_mb(self) -> dict:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()
        return self.proc.returncode


def speak(url: str, text: str, timeout: float, **extra) -> tuple[int, bytes, float, float]:
    """POST one request -> (status, body, seconds to the first audio byte, seconds in all)."""
    body = {"model": "tts-1", "input": text, "voice": "bench", "response_format": "pcm", "seed": 0, **extra}
    start = time.perf_counter()
    first = None
    chunks = []
    with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=timeout) as r:
        for chunk in r.iter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - start
            chunks.append(chunk)
    return r.status_code, b"".join(chunks), first or 0.0, time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


# ---- scenarios


def throughput(a, server: Server, base: dict) -> None:
    speak(server.url, SENTENCES[0], a.timeout, max_frames=a.frames)  # warm-up
    rates = {}
    for clients in a.clients:
        before = server.metrics()
        latencies, frames = [], []

        def client(c: int, latencies: list = latencies, frames: list = frames) -> None:
            for k in range(a.requests_per_client):
                status, data, _, seconds = speak(server.url, SENTENCES[(c + k) % len(SENTENCES)], a.timeout,
                                                 max_frames=a.frames)
                if status != 200:
                    raise RuntimeError(f"status {status}: {data[:200]!r}")
                latencies.append(seconds)
                frames.append(len(data) // FRAME_BYTES)

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        wall = time.perf_counter() - start
        after = server.metrics()
        ar_frames = after["valle_ar_frames_total"] - before["valle_ar_frames_total"]
        ar_seconds = after["valle_ar_step_seconds_total"] - before["valle_ar_step_seconds_total"]
        rows = after["valle_batch_rows_sum"] - before["valle_batch_rows_sum"]
        steps = after["valle_batch_rows_count"] - before["valle_batch_rows_count"]
        rates[clients] = ar_frames / ar_seconds
        print(json.dumps({**base, "scenario": "throughput", "clients": clients, "requests": len(latencies),
                          "latency_p50_s": pct(latencies, 50), "latency_p95_s": pct(latencies, 95),
                          "ar_frames_per_s": round(rates[clients], 2),
                          "end_to_end_frames_per_s": round(sum(frames) / wall, 2),
                          "mean_batch_rows": round(rows / max(steps, 1), 2), "wall_s": round(wall, 2),
                          "machine": machine(a.device)}), flush=True)
    one = rates.get(1)
    if one:
        print(json.dumps({**base, "scenario": "throughput", "ar_speedup_vs_one_client":
                          {c: round(r / one, 2) for c, r in rates.items()}}), flush=True)


def ttfa(a, server: Server, base: dict) -> None:
    three = " ".join(SENTENCES[:3])
    speak(server.url, SENTENCES[0], a.timeout, max_frames=a.frames)  # warm-up
    alone, streamed = [], []
    for _ in range(a.repeats):
        alone.append(speak(server.url, SENTENCES[0], a.timeout, max_frames=a.frames)[3])
        status, data, first, _ = speak(server.url, three, a.timeout, max_frames=a.frames, stream=True)
        if status != 200:
            raise RuntimeError(f"status {status}: {data[:200]!r}")
        streamed.append(first)
    a1, s1 = statistics.median(alone), statistics.median(streamed)
    print(json.dumps({**base, "scenario": "ttfa", "first_sentence_alone_s": round(a1, 3),
                      "three_sentences_streamed_first_audio_s": round(s1, 3), "ratio": round(s1 / a1, 3),
                      "repeats": a.repeats, "machine": machine(a.device)}), flush=True)


def load(a, server: Server, base: dict) -> None:
    kinds = [{"input": SENTENCES[i % 4], "max_frames": max(4, a.frames // (1 + i % 2))} for i in range(4)]
    kinds.append({"input": " ".join(SENTENCES[:2]), "max_frames": a.frames})
    bad = [({"input": "Hello.", "voice": "nobody"}, 404), ({"input": "  "}, 400), ({"input": "x" * 5000}, 400)]
    reference = []
    for kind in kinds:  # each kind alone, before the load
        status, data, _, _ = speak(server.url, timeout=a.timeout, text=kind["input"], max_frames=kind["max_frames"])
        assert status == 200, data[:300]
        reference.append(data)
    warm = server.rss_mb()
    before = server.metrics()
    results: dict[int, tuple] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        if i % 10 == 9:
            change, expected = bad[(i // 10) % len(bad)]
            body = {"max_frames": a.frames, **change}
        else:
            k = i % len(kinds)
            body, expected = dict(kinds[k]), k
        text = body.pop("input") if "input" in body else ""
        try:
            status, data, _, seconds = speak(server.url, text, a.timeout, **body)
        except httpx.HTTPError as e:
            status, data, seconds = -1, repr(e).encode(), 0.0
        with lock:
            if i in results:
                results[i] = ("duplicate", status)
            else:
                results[i] = (expected, status, data, seconds)

    start = time.perf_counter()
    with ThreadPoolExecutor(a.load_clients) as pool:
        list(pool.map(one, range(a.load_requests)))
    wall = time.perf_counter() - start
    after = server.metrics()
    counts = {"audio_ok": 0, "audio_wrong": 0, "4xx_ok": 0, "429": 0, "unexpected": 0}
    for expected, status, data, _ in results.values():
        if status == 429:
            ok = json.loads(data)["error"]["type"] == "rate_limit_error"
            counts["429" if ok else "unexpected"] += 1
        elif isinstance(expected, int) and expected < len(kinds) and status == 200:
            counts["audio_ok" if data == reference[expected] else "audio_wrong"] += 1
        elif status == expected and "error" in json.loads(data):
            counts["4xx_ok"] += 1
        else:
            counts["unexpected"] += 1
    key = 'valle_requests_total{path="/v1/audio/speech",status="%s"}'
    served = sum(after.get(key % s, 0) - before.get(key % s, 0) for s in (200, 400, 404, 429, 500, 503, 504))
    end = server.rss_mb()
    print(json.dumps({**base, "scenario": "load", "requests": a.load_requests, "clients": a.load_clients,
                      "answers": len(results), "server_counted": int(served), **counts,
                      "latency_p50_s": pct([r[3] for r in results.values() if r[1] == 200], 50),
                      "latency_p95_s": pct([r[3] for r in results.values() if r[1] == 200], 95),
                      "rss_after_warmup_mb": round(warm["VmRSS"], 1), "rss_end_mb": round(end["VmRSS"], 1),
                      "rss_growth_mb": round(end["VmRSS"] - warm["VmRSS"], 1), "peak_rss_mb": round(end["VmHWM"], 1),
                      "wall_s": round(wall, 2), "machine": machine(a.device)}), flush=True)


def main() -> None:
    a = build_parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        checkpoint, flags = prepare(a, work)
        base = {"bench": "serve_load", "model": a.model, "frames": a.frames, "prompt_frames": a.prompt_frames,
                "device": a.device, "server_threads": a.threads}
        engines = {e: engine_flags(e, checkpoint, flags, work) for e in a.engine}  # exports first
        for scenario, engine in [(s, e) for s in a.scenarios for e in a.engine]:
            extra = ["--max-batch", "8", "--max-waiting", "4"] if scenario == "load" else []
            server = Server(a, work, checkpoint, flags, *engines[engine], *extra)
            try:
                {"throughput": throughput, "ttfa": ttfa, "load": load}[scenario](a, server, base | {"engine": engine})
            finally:
                code = server.stop()
                if code != 0 or "Traceback" in server.log_path.read_text():
                    print(server.log_path.read_text()[-3000:], file=sys.stderr)


if __name__ == "__main__":
    main()
