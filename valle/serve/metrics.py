"""The server's numbers in the Prometheus text format (version 0.0.4): counters, gauges and histograms."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
RATE_WINDOW = 10.0  # seconds over which frames/s is measured


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        return out + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}",
                      f"{name}_count {self.count}"]


class Metrics:
    """What /metrics shows. Updated from the event loop and the engine thread (under one lock)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}  # (path, status) -> count
        self.latency = Histogram(LATENCY_BUCKETS)  # whole speech requests
        self.first_audio = Histogram(LATENCY_BUCKETS)  # streamed speech requests: until their first audio was sent
        self.batch_size = Histogram(BATCH_BUCKETS)  # rows of each AR step
        self.frames_total = 0
        self.step_seconds = 0.0  # time in AR steps (prefills and the NAR not counted)
        self._frames: deque[tuple[float, int]] = deque()  # (time, frames) of recent steps
        self.gauges: dict[str, Callable[[], float]] = {}  # name -> current value (queue length, running rows)

    def count_request(self, path: str, status: int) -> None:
        with self._lock:
            self.requests[(path, status)] = self.requests.get((path, status), 0) + 1

    def observe(self, histogram: Histogram, value: float) -> None:
        with self._lock:
            histogram.observe(value)

    def count_step(self, rows: int, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.batch_size.observe(rows)
            self.frames_total += rows
            self.step_seconds += seconds
            self._frames.append((now, rows))
            while self._frames and self._frames[0][0] < now - RATE_WINDOW:
                self._frames.popleft()

    def frames_per_second(self) -> float:
        now = time.monotonic()
        return sum(n for t, n in self._frames if t >= now - RATE_WINDOW) / RATE_WINDOW

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP valle_requests_total HTTP requests answered, by path and status",
                     "# TYPE valle_requests_total counter"]
            lines += [f'valle_requests_total{{path="{p}",status="{s}"}} {n}'
                      for (p, s), n in sorted(self.requests.items())]
            for name, help_text, hist in (
                    ("valle_request_seconds", "speech requests, arrival to last byte", self.latency),
                    ("valle_first_audio_seconds", "streamed speech requests, arrival to first audio",
                     self.first_audio),
                    ("valle_batch_rows", "rows generated together in each AR step", self.batch_size)):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram", *hist.lines(name)]
            lines += ["# HELP valle_ar_frames_total AR frames generated", "# TYPE valle_ar_frames_total counter",
                      f"valle_ar_frames_total {self.frames_total}",
                      "# HELP valle_ar_step_seconds_total time spent in AR steps",
                      "# TYPE valle_ar_step_seconds_total counter",
                      f"valle_ar_step_seconds_total {self.step_seconds:.6f}",
                      f"# HELP valle_ar_frames_per_second AR frames per second over the last {RATE_WINDOW:.0f} s",
                      "# TYPE valle_ar_frames_per_second gauge",
                      f"valle_ar_frames_per_second {self.frames_per_second():.3f}"]
        for name, value in self.gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value()}"]
        return "\n".join(lines) + "\n"
