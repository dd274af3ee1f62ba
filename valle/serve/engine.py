"""The generation engine of the speech API: one thread owns the model and decodes every waiting job together.

Continuous batching: at every AR step boundary, waiting jobs join the running batch (after a prefill of their own,
valle.models.continuous) and finished or cancelled ones leave it. Jobs that finish at the same step get their NAR
codebooks in one batch at once; their waveforms are made in a second thread while the AR goes on. Each job samples
with its own Sampling and its own torch.Generator seeded from its seed, so its codes are those of generating it
alone (valle.inference.generate with the same Sampling), up to the server's frame cap.

Voices with LoRA adapters: the batch is grouped by adapter set. A job joins the running batch when its voice uses
the same adapters (or none, as the running ones); otherwise it waits at the head of the queue until the batch
drains, then its adapters are hooked on (valle.serve.voices.VoiceBank.activate). Jobs are admitted in arrival
order, so no voice waits behind later jobs of another.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from valle.config import Sampling
from valle.inference import Request, model_inputs
from valle.models.valle import FRAMES_PER_TEXT_TOKEN, sample
from valle.serve.limits import Limits

log = logging.getLogger("valle.serve")


@dataclass(eq=False)
class Job:
    """One piece of text (a sentence or a few) in one voice. `done` is called once, from the engine or the decoding
    thread, with (codes (T, Q), wave (T * 320,)) or an exception. A cancelled job costs nothing from its next step
    on, silently: it leaves the queue or the AR batch there, and its NAR and waveform are not made (a waveform being
    made when it is cancelled is finished, then dropped)."""

    request: Request
    adapters: tuple[str, ...]
    sampling: Sampling  # with its seed
    done: Callable[[object], None]
    cancelled: bool = False
    # the engine's, while the job runs
    inputs: tuple = ()
    generator: torch.Generator | None = None
    limit: int = 0
    frames: list[int] = field(default_factory=list)
    finished: bool = False


class Engine:
    """`submit(job)`, `cancel(job)`, `call(fn)` (run fn in the engine thread, between steps) -> Future."""

    def __init__(self, model, bank, decoder, metrics, limits: Limits):
        self.model, self.bank, self.decoder, self.metrics = model, bank, decoder, metrics
        self.max_batch = limits.max_batch
        self.max_frames = limits.max_frames  # the cap of every job, whatever its sampling asks
        self.device = model.device
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._calls: deque[tuple[Callable, concurrent.futures.Future]] = deque()
        self._running: list[Job] = []  # job of each row of self._rows
        self._rows = model.ar_rows()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="valle-engine", daemon=True)
        self._decoding = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="valle-decode")

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what runs and waits (cancelled jobs excepted), then end the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        self._decoding.shutdown(wait=True)

    def submit(self, job: Job) -> None:
        with self._cond:
            self._pending.append(job)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        job.cancelled = True  # read by the engine thread at the next step boundary

    def call(self, fn: Callable) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._calls.append((fn, future))
            self._cond.notify()
        return future

    # ---- the engine thread

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._pending or self._calls or self._running or self._stop):
                        self._cond.wait()
                    if self._stop and not (self._pending or self._calls or self._running):
                        return
                    calls, self._calls = list(self._calls), deque()
                    joining = self._admit()
                for fn, future in calls:
                    try:
                        future.set_result(fn())
                    except Exception as e:  # the caller reports it
                        future.set_exception(e)
                for job in joining:
                    self._join(job)
                self._retire()
                if self._running:
                    self._step()

    def _admit(self) -> list[Job]:
        """Waiting jobs that join now: from the head of the queue, while they share the running batch's adapters."""
        joining: list[Job] = []
        group = self._running[0].adapters if self._running else None
        while self._pending and len(self._running) + len(joining) < self.max_batch:
            job = self._pending[0]
            if job.cancelled:
                self._pending.popleft()
                continue
            group = job.adapters if group is None else group
            if job.adapters != group:
                break
            joining.append(self._pending.popleft())
        return joining

    def _join(self, job: Job) -> None:
        try:
            if self.bank.active != job.adapters:  # only when the batch is empty (see _admit)
                self.bank.activate(job.adapters)
            job.inputs = model_inputs(self.model, job.request)  # text (L,), langs (L,), prompt (Tp, Q), prompt len
            s = job.sampling
            job.limit = min(self.max_frames, s.max_frames or FRAMES_PER_TEXT_TOKEN * len(job.inputs[0]))
            job.generator = torch.Generator(device=self.device).manual_seed(s.seed)
            logits = self._rows.join(*job.inputs[:3], frames=job.limit)  # (1, V+1)
        except Exception as e:
            job.done(e)
            return
        self._running.append(job)
        self._next(job, logits)

    def _next(self, job: Job, logits: torch.Tensor) -> None:
        """The job's next code from its logits (1, V+1); EOS is not allowed before its min_frames. A draw that fails
        (sampling that turns these logits into NaN) fails this job alone: it leaves the batch at the next step."""
        if len(job.frames) < job.sampling.min_frames:
            logits = logits.clone()
            logits[:, self.model.eos] = float("-inf")
        try:
            code = int(sample(logits, job.sampling, job.generator))
        except RuntimeError as e:
            log.warning("a request's sampling (%s) failed: %s", job.sampling, e)
            job.cancelled = True
            job.done(e)
            return
        if code == self.model.eos:
            job.finished = True
        else:
            job.frames.append(code)
            job.finished = len(job.frames) >= job.limit

    def _step(self) -> None:
        try:
            ids = torch.tensor([job.frames[-1] for job in self._running], device=self.device)  # (n,)
            start = time.perf_counter()
            logits = self._rows.step(ids)  # (n, V+1)
            self.metrics.count_step(len(self._running), time.perf_counter() - start)
            for row, job in enumerate(self._running):
                self._next(job, logits[row : row + 1])
        except Exception as e:  # a bug or out of memory: fail the running jobs, keep serving
            log.exception("AR step failed; %d running requests fail", len(self._running))
            for job in self._running:
                job.done(e)
            self._running, self._rows = [], self.model.ar_rows()

    def _retire(self) -> None:
        """Rows that finished or were cancelled leave the batch (the last row takes each one's place)."""
        done = []
        for row in reversed(range(len(self._running))):
            job = self._running[row]
            if job.finished or job.cancelled:
                self._rows.leave(row)
                self._running[row] = self._running[-1]
                self._running.pop()
                if not job.cancelled:
                    done.append(job)
        if done:
            self._finish(done[::-1])

    def _finish(self, jobs: list[Job]) -> None:
        """NAR codebooks of the jobs that finished at the same step (one batch); their waveforms are made in the
        decoding thread, so the next AR steps need not wait for them."""
        try:
            text, langs, prompts, prompt_lens = (list(x) for x in zip(*(job.inputs for job in jobs)))
            ar = [torch.tensor(job.frames, dtype=torch.long, device=self.device) for job in jobs]  # (T_i,)
            codes = self.model.generate_nar(text, langs, prompts, prompt_lens, ar)  # (T_i, Q)
        except Exception as e:
            log.exception("the NAR failed; %d requests fail", len(jobs))
            for job in jobs:
                job.done(e)
            return
        for job, c in zip(jobs, codes):
            self._decoding.submit(self._decode, job, c)

    def _decode(self, job: Job, codes: torch.Tensor) -> None:
        """The waveform of a job's codes (in the decoding thread, while the AR goes on); none for a cancelled job."""
        if job.cancelled:
            return
        try:
            with torch.inference_mode():
                wave = self.decoder.decode(codes) if len(codes) else torch.zeros(0)  # (T * 320,)
        except Exception as e:
            log.exception("decoding a request's audio failed")
            job.done(e)
            return
        job.done((codes.cpu(), wave))
