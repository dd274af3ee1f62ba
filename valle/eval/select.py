"""Which utterances are evaluated, with which prompt: deterministic choices from the cuts.

same-speaker prompts: for each target, another utterance of the same speaker (from any split of the corpus),
3-10 s when there is one (else the one closest to that range); ties broken by a seeded hash, so the
choice does not depend on the order of the files.
"""

from __future__ import annotations

import hashlib
import heapq
import statistics
from collections import defaultdict

from valle.inference import MAX_PROMPT_SECONDS

PROMPT_SECONDS = (3.0, 10.0)


def _key(seed: int, *names: str) -> str:
    return hashlib.sha1("\t".join([str(seed), *names]).encode()).hexdigest()


def select_utterances(cuts, n: int, seed: int) -> list:
    """Up to `n` cuts (0 = all), chosen by a seeded hash of their ids, returned sorted by id. With `n`, only the
    chosen ones are held (a lazy manifest of any size streams)."""
    key = lambda c: _key(seed, c.id)  # noqa: E731
    chosen = heapq.nsmallest(n, cuts, key=key) if n else sorted(cuts, key=key)
    return sorted(chosen, key=lambda c: c.id)


def speaker_of(cut) -> str:
    return cut.supervisions[0].speaker or "unknown"


def choose_prompt(target, pool, seed: int):
    """Another cut of the target's speaker, or None when the speaker has no other usable utterance."""
    lo, hi = PROMPT_SECONDS
    candidates = [c for c in pool if speaker_of(c) == speaker_of(target) and c.id != target.id
                  and c.duration <= MAX_PROMPT_SECONDS]
    if not candidates:
        return None
    distance = lambda c: max(lo - c.duration, c.duration - hi, 0.0)  # noqa: E731 - 0 inside 3-10 s
    return min(candidates, key=lambda c: (distance(c), _key(seed, target.id, c.id)))


def speaker_rates(cuts) -> dict[str, float]:
    """Seconds per text token of each speaker (median over its cuts): the expected duration of a new text."""
    per_speaker = defaultdict(list)
    for c in cuts:
        ids = c.supervisions[0].custom.get("text_ids") if c.supervisions[0].custom else None
        if ids:
            per_speaker[speaker_of(c)].append(c.duration / len(ids))
    return {s: statistics.median(v) for s, v in per_speaker.items()}
