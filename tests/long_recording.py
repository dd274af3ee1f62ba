"""A synthetic long recording with known truth, shared by tests/test_segment.py and bench/segment.py.

espeak-ng sentences of 3 voices (the target and two others) separated by 0.3-1.5 s pauses, some pauses holding a
burst of noise or a tone, one sentence interrupted by another voice (they overlap), over a faint noise floor.
The file is written block by block (a 3-hour recording never sits in memory); `Truth` says where each
sentence's speech starts and ends, who speaks it, and the text.
"""

from __future__ import annotations

import functools
import io
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 22050  # espeak-ng's own rate: the segmenter must resample
VOICES = ("en-us+m3", "en-us+f2", "en-us+klatt")  # the first is the target voice
SENTENCES = (
    "The old lighthouse keeper climbed the stairs every evening before sunset.",
    "She packed three apples and a map for the long walk home.",
    "Nobody expected the river to rise so quickly after the storm.",
    "A small boat drifted slowly past the harbour wall.",
    "The children laughed when the puppy chased its own tail.",
    "Please close the window before you leave the room.",
    "Our train was delayed by almost an hour this morning.",
    "He wrote a letter to his sister in the mountains.",
    "The market opens early on Saturdays during the summer.",
    "Bright stars filled the sky above the quiet village.",
    "My grandmother baked bread every Sunday afternoon.",
    "The museum keeps a collection of ancient coins and maps.",
    "Heavy snow covered the road to the northern farms.",
    "They painted the fence green to match the garden door.",
    "The teacher asked everyone to read the first chapter again.",
    "A gentle wind moved through the tall grass of the meadow.",
    "We found a quiet table near the back of the cafe.",
    "The engine started on the third try and the crowd cheered.",
    "Fresh coffee was waiting for us in the kitchen.",
    "The library closes at nine on weekdays.",
)
REFERENCE_SENTENCES = ("Every voice has its own colour, and this one belongs to the narrator of the story.",
                       "It is recorded separately so that the segmenter can learn whom to keep.")


@dataclass
class Truth:
    start: float  # seconds: first sounding sample of the sentence
    end: float  # last sounding sample
    voice: int  # index into VOICES; 0 is the target
    text: str
    overlapped: bool = False  # another voice speaks over part of it


@functools.lru_cache(maxsize=256)
def speak(text: str, voice: str) -> np.ndarray:
    """espeak-ng -> float32 (T,) at RATE, trimmed to its first and last sounding sample."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "--stdout", text], check=True,
                         capture_output=True).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == RATE
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    return 0.6 * x[loud[0]: loud[-1] + 1]


def write_reference(path: Path, voice: int = 0, seconds: float = 5.0) -> Path:
    """About `seconds` of one voice (sentences not in the recording), for --keep-speaker."""
    x = np.concatenate([np.concatenate([speak(s, VOICES[voice]), np.zeros(int(0.4 * RATE), np.float32)])
                        for s in REFERENCE_SENTENCES])
    sf.write(str(path), x[: int(seconds * RATE)], RATE)
    return path


def write_recording(path: Path, seconds: float, seed: int = 0, target_share: float = 0.6,
                    interrupt: bool = True, gaps: bool = True) -> list[Truth]:
    """Write a recording of about `seconds` to `path` (wav, mono) and return the truth of every sentence."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    truth: list[Truth] = []
    clock = 0  # samples written
    interrupted = not interrupt  # one interruption, about a third of the way in
    texts: list[str] = []
    with sf.SoundFile(str(path), "w", RATE, 1, subtype="PCM_16") as out:

        def put(x: np.ndarray) -> None:
            nonlocal clock
            out.write(x + noise.normal(0, 3e-4, len(x)).astype(np.float32))  # a faint noise floor (-70 dBFS)
            clock += len(x)

        def pause() -> None:
            put(np.zeros(int(rng.uniform(0.3, 1.5) * RATE), np.float32))

        put(np.zeros(int(0.5 * RATE), np.float32))
        while clock < seconds * RATE:
            voice = 0 if rng.random() < target_share else rng.choice((1, 2))
            text = texts.pop() if texts else None
            if text is None:  # every sentence once (shuffled), then again: no repeats within 20 sentences
                texts = rng.sample(SENTENCES, len(SENTENCES))
                text = texts.pop()
            x = speak(text, VOICES[voice])
            if not interrupted and clock > seconds * RATE / 3:
                interrupted = True
                other_text = rng.choice(SENTENCES)
                other = speak(other_text, VOICES[1 if voice == 0 else 0])
                overlap = int(0.8 * RATE)  # the other voice starts 0.8 s before this one ends
                mixed = np.zeros(len(x) + len(other) - overlap, np.float32)
                mixed[: len(x)] += x
                mixed[len(x) - overlap:] += other
                truth.append(Truth(clock / RATE, (clock + len(x) - 1) / RATE, voice, text, overlapped=True))
                truth.append(Truth((clock + len(x) - overlap) / RATE, (clock + len(mixed) - 1) / RATE,
                                   1 if voice == 0 else 0, other_text, overlapped=True))
                put(mixed)
            else:
                truth.append(Truth(clock / RATE, (clock + len(x) - 1) / RATE, voice, text))
                put(x)
            pause()
            if gaps and rng.random() < 0.1:  # a burst of noise or a tone between two pauses
                n = int(rng.uniform(0.5, 1.5) * RATE)
                if rng.random() < 0.5:
                    put(noise.normal(0, 0.05, n).astype(np.float32))
                else:
                    put((0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)).astype(np.float32))
                pause()
    return truth
