"""Known text -> where each sentence is spoken, LibriTTS-style (cut at sentence ends), offline.

The aligner matches the text's sentences, in order, to runs of speech found by the VAD (split at pauses of at
least `min_gap`), by dynamic programming over durations: a sentence covers one or more consecutive runs, and its
length in letters times the reader's rate (estimated from the recording, then refined from the matches) should
be its duration. A sentence that fits nowhere is skipped and reported (not in the audio); a run that fits no
sentence is skipped and reported (not in the text). Nothing is guessed: a sentence is only placed on speech
whose duration fits it. Works for any language whose text has sentence ends; needs pauses between sentences.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from valle.data.segment.cuts import Span

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"'”’)\]]*\s+")
MAX_RUNS = 12  # runs one sentence may cover (pauses inside a sentence: commas, breaths)
SIGMA = 0.25  # spread of log(duration / expected) for a matching sentence
SKIP_COST = 6.0  # cost of leaving a sentence or a run unmatched (about 2.4 sigma)
BAND, MIN_BAND = 0.1, 40  # the DP looks this far (share of the runs, at least this many) off the diagonal


@dataclass
class Alignment:
    spans: list[Span]  # one per sentence found, text = the sentence (original)
    missing: list[tuple[int, str, float]]  # (sentence number from 1, sentence, where it would be in s)
    extra: list[tuple[float, float]]  # speech not in the text: (start, end)


def split_sentences(text: str) -> list[str]:
    """Sentences of a text (ends: . ! ? and their CJK forms), whitespace collapsed."""
    text = " ".join(text.split())
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _weight(sentence: str) -> int:
    """How long a sentence takes to say, in letters (digits count 3: they are read as words)."""
    return sum(3 if c.isdigit() else 1 for c in sentence if c.isalnum()) or 1


def _align(weights: list[int], runs: list[tuple[float, float]], rate: float):
    """DP: -> (matched [(sentence, first run, last run)], skipped sentences, skipped runs). Only cells within
    a band around the diagonal are visited (BAND of the runs, at least MIN_BAND): O(sentences x band)."""
    m, n = len(weights), len(runs)
    spoken = np.concatenate([[0.0], np.cumsum([e - s for s, e in runs])])  # (n+1,) speech before run j
    band = max(MIN_BAND, int(BAND * n))
    cost = np.full((m + 1, n + 1), np.inf)
    back = {}
    cost[0, 0] = 0.0
    for i in range(m + 1):
        centre = round(i * n / m)
        for j in range(max(0, centre - band), min(n, centre + band) + 1):
            c = cost[i, j]
            if not np.isfinite(c):
                continue
            if i < m and c + SKIP_COST < cost[i + 1, j]:
                cost[i + 1, j], back[i + 1, j] = c + SKIP_COST, (i, j, None)
            if j < n and c + SKIP_COST < cost[i, j + 1]:
                cost[i, j + 1], back[i, j + 1] = c + SKIP_COST, (i, j, None)
            if i == m:
                continue
            expected = rate * weights[i]
            for k in range(j + 1, min(n, j + MAX_RUNS) + 1):  # sentence i covers runs j..k-1
                step = (math.log((spoken[k] - spoken[j]) / expected) / SIGMA) ** 2 + 0.1 * (k - j - 1)
                if c + step < cost[i + 1, k]:
                    cost[i + 1, k], back[i + 1, k] = c + step, (i, j, (i, j, k - 1))
    if not np.isfinite(cost[m, n]):
        raise ValueError("the text and the recording differ too much to align (more than a tenth of either is "
                         "missing from the other): split them into matching parts, or transcribe instead")
    matched, skipped_sentences, skipped_runs = [], [], []
    i, j = m, n
    while (i, j) != (0, 0):
        pi, pj, match = back[i, j]
        if match:
            matched.append(match)
        elif pi < i:
            skipped_sentences.append(pi)
        else:
            skipped_runs.append(pj)
        i, j = pi, pj
    return matched[::-1], skipped_sentences[::-1], skipped_runs[::-1]


def align(sentences: list[str], runs: list[tuple[float, float]]) -> Alignment:
    """Sentences (in reading order) onto speech runs (start, end) in seconds."""
    if not sentences or not runs:
        return Alignment([], [(n + 1, s, 0.0) for n, s in enumerate(sentences)], list(runs))
    weights = [_weight(s) for s in sentences]
    rate = sum(e - s for s, e in runs) / sum(weights)  # seconds of speech per letter, first guess
    for _ in range(3):  # refine the rate from what matched
        matched, missing, extra = _align(weights, runs, rate)
        if not matched:
            break
        rate = (sum(sum(e - s for s, e in runs[a: b + 1]) for _, a, b in matched)
                / sum(weights[i] for i, _, _ in matched))
    spans = []
    for i, a, b in matched:
        gaps = tuple((runs[r][1], runs[r + 1][0]) for r in range(a, b))
        spans.append(Span(runs[a][0], runs[b][1], gaps, sentences[i]))

    def where(i: int) -> float:  # the end of the last sentence found before sentence i
        before = [s.end for (k, _, _), s in zip(matched, spans) if k < i]
        return before[-1] if before else 0.0

    return Alignment(spans, [(i + 1, sentences[i], where(i)) for i in missing], [runs[j] for j in extra])
