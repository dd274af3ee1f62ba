"""Where a long recording is cut: speech runs from the VAD's frame probabilities, cut inside pauses,
short neighbours merged, long pieces split at their longest pause, a little silence kept at both ends.

All times are seconds into the source recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from valle.data.segment.audio import FRAME_SECONDS
from valle.errors import UserError

MAX_SEGMENT = 60.0  # seconds: no utterance to train on is longer (preparation rejects over 20 s by default)


@dataclass(frozen=True)
class CutOptions:
    segment_min: float = 1.0  # no segment shorter (short neighbours are merged; what stays short is flagged)
    segment_max: float = 15.0  # no segment longer (LibriTTS: most 2-10 s, none over 15 s)
    min_pause: float = 0.25  # a pause at least this long ends a segment
    pad: float = 0.15  # silence kept before and after the speech (at most half the pause)
    onset: float = 0.5  # VAD probability that starts speech
    offset: float = 0.35  # and that ends it (hysteresis)
    min_speech: float = 0.1  # a shorter sounding run with no speech near it is a click, not speech
    end_lag: float = 0.05  # the VAD's probability falls this late after speech ends (measured on espeak-ng: 0.068)
    onset_db: float = 12.0  # a soft onset (a fricative the VAD misses): frames this far above the noise floor
    max_onset: float = 0.3  # ... extend the start back by at most this

    def __post_init__(self):  # the user's four (flags and the page); written so that NaN fails
        if not 0 < self.segment_min < self.segment_max <= MAX_SEGMENT:
            raise UserError(f"--segment-min {self.segment_min} --segment-max {self.segment_max}: need "
                            f"0 < min < max <= {MAX_SEGMENT} seconds")
        if not 0 < self.min_pause <= MAX_SEGMENT:
            raise UserError(f"--min-pause {self.min_pause}: need seconds in (0, {MAX_SEGMENT}]")
        if not 0 <= self.pad <= MAX_SEGMENT:
            raise UserError(f"--pad {self.pad}: need seconds in [0, {MAX_SEGMENT}]")


@dataclass
class Span:
    """Speech from `start` to `end` (no padding); `gaps` are the shorter pauses inside it, (start, end) each."""

    start: float
    end: float
    gaps: tuple[tuple[float, float], ...] = ()
    text: str = ""  # known text (aligned) or empty

    @property
    def seconds(self) -> float:
        return self.end - self.start


def speech_runs(probs: np.ndarray, levels: np.ndarray, o: CutOptions) -> list[tuple[float, float]]:
    """(N,) frame probabilities and levels (dB) -> [(start, end)] of speech, with hysteresis (a run starts where
    the probability rose above `offset` before it reached `onset`, or earlier where the level already stood
    `onset_db` above the noise floor), isolated clicks dropped."""
    floor = np.percentile(levels, 5) if len(levels) else 0.0
    runs, start, last_end = [], None, 0
    for i, p in enumerate(probs):
        if start is None and p >= o.onset:
            start = i
            while start > last_end and probs[start - 1] >= o.offset:
                start -= 1
            earliest = max(last_end, start - int(o.max_onset / FRAME_SECONDS))
            while start > earliest and levels[start - 1] > floor + o.onset_db:
                start -= 1
        elif start is not None and p < o.offset:
            runs.append((start * FRAME_SECONDS, max(start * FRAME_SECONDS, i * FRAME_SECONDS - o.end_lag)))
            start, last_end = None, i
    if start is not None:
        runs.append((start * FRAME_SECONDS, len(probs) * FRAME_SECONDS))
    def click(k: int) -> bool:  # short and alone: not a syllable of a word nearby
        s, e = runs[k]
        before_alone = k == 0 or s - runs[k - 1][1] >= o.min_pause
        after_alone = k + 1 == len(runs) or runs[k + 1][0] - e >= o.min_pause
        alone = before_alone and after_alone
        return e - s < o.min_speech and alone

    return [r for k, r in enumerate(runs) if not click(k)]


def join_runs(runs: list[tuple[float, float]], min_pause: float) -> list[Span]:
    """Runs separated by less than `min_pause` become one span (the pause kept as a gap inside it)."""
    spans: list[Span] = []
    for s, e in runs:
        if spans and s - spans[-1].end < min_pause:
            last = spans[-1]
            spans[-1] = Span(last.start, e, last.gaps + ((last.end, s),))
        else:
            spans.append(Span(s, e))
    return spans


def _merge(a: Span, b: Span) -> Span:
    return Span(a.start, b.end, a.gaps + ((a.end, b.start),) + b.gaps, " ".join(filter(None, (a.text, b.text))))


def merge_short(spans: list[Span], o: CutOptions) -> list[Span]:
    """A span shorter than segment_min joins the neighbour across the shorter pause, when the result fits."""
    spans = list(spans)
    i = 0
    while i < len(spans):
        if spans[i].seconds >= o.segment_min:
            i += 1
            continue
        before = spans[i].start - spans[i - 1].end if i > 0 else np.inf
        after = spans[i + 1].start - spans[i].end if i + 1 < len(spans) else np.inf
        j = i - 1 if before <= after else i + 1
        lo = min(i, j)
        if not 0 <= j < len(spans) or spans[lo + 1].end - spans[lo].start > o.segment_max:
            i += 1
            continue
        spans[lo: lo + 2] = [_merge(spans[lo], spans[lo + 1])]
        i = lo
    return spans


def split_long(span: Span, o: CutOptions, probs: np.ndarray) -> list[Span]:
    """A span longer than segment_max is cut at its longest inner pause (or, with none, at the frame of
    least speech probability in its middle), recursively."""
    if span.seconds <= o.segment_max or span.text:  # known text is never cut blindly: flagged too_long instead
        return [span]
    inner = [g for g in span.gaps if g[0] - span.start >= o.segment_min and span.end - g[1] >= o.segment_min]
    if inner:
        g = max(inner, key=lambda g: g[1] - g[0])
        left = Span(span.start, g[0], tuple(x for x in span.gaps if x[1] <= g[0]))
        right = Span(g[1], span.end, tuple(x for x in span.gaps if x[0] >= g[1]))
    else:
        lo = int((span.start + span.seconds / 4) / FRAME_SECONDS)
        hi = int((span.end - span.seconds / 4) / FRAME_SECONDS)
        cut = (lo + int(np.argmin(probs[lo:hi]))) * FRAME_SECONDS
        left, right = Span(span.start, cut), Span(cut, span.end)
    return split_long(left, o, probs) + split_long(right, o, probs)


def pad(spans: list[Span], o: CutOptions, duration: float) -> list[tuple[float, float]]:
    """(start, end) of each span with up to `pad` seconds of silence, never past the middle of a pause."""
    out = []
    for i, s in enumerate(spans):
        prev_end = spans[i - 1].end if i else 0.0
        next_start = spans[i + 1].start if i + 1 < len(spans) else duration
        out.append((max(s.start - o.pad, (prev_end + s.start) / 2, 0.0),
                    min(s.end + o.pad, (s.end + next_start) / 2, duration)))
    return out


def find_spans(probs: np.ndarray, levels: np.ndarray, o: CutOptions) -> list[Span]:
    """The whole chain without word timings: runs -> spans at pauses -> short merged -> long split."""
    spans = merge_short(join_runs(speech_runs(probs, levels, o), o.min_pause), o)
    return [part for s in spans for part in split_long(s, o, probs)]
