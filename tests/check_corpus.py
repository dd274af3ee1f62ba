"""A corpus for the data check (tests/test_check_data.py, bench/check_data.py): espeak-ng sentences of two voices,
one folder per speaker (audio + same-stem .txt), and damaged copies made in known ways, each with the reason the
check must give it."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SPEAKERS = {"anna": "en+f3", "bert": "en-us"}  # speaker folder -> espeak-ng voice
OTHER_VOICE = "en+m7"  # "one file from another voice"
_SUBJECTS = ("the old sailor", "my neighbour", "a young teacher", "the tired doctor", "our new captain",
             "the quiet farmer", "her little brother", "a clever student", "the busy baker", "his best friend")
_VERBS = ("painted", "carried", "opened", "cleaned", "followed", "borrowed", "noticed", "repaired")
_OBJECTS = ("a wooden boat", "the heavy window", "seven yellow letters", "a broken bicycle", "the morning train",
            "an empty basket", "the silver clock", "a narrow bridge")
_WHEN = ("before breakfast", "after the storm", "on a cold evening", "during the long summer", "at the harbour")
# the damage -> the start of the flag that names it (valle.data.check)
REASONS = {"clipping": "clipping", "noise": "low signal-to-noise", "transcript": "transcript",
           "voice": "another voice", "silence": "long silence", "duplicate": "duplicate", "quiet": "loudness",
           "rate": "speaking rate"}


def sentences(n: int, seed: int = 0) -> list[str]:
    """n different sentences of 7-11 words."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_WHEN)}."
        s = s[0].upper() + s[1:]
        if s not in out:
            out.append(s)
    return out


def speak(text: str, voice: str, path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)


def _rewrite(path: Path, change) -> None:
    wave, rate = sf.read(path, dtype="float32")
    sf.write(path, change(wave, rate), rate, subtype="PCM_16")


def damage(path: Path, how: str, rng: np.random.Generator, spare_text: str) -> Path:
    """Damage one utterance in place (the duplicate is a new file next to it); returns the damaged file."""
    if how == "clipping":
        _rewrite(path, lambda w, r: np.clip(w * 6, -1, 1))
    elif how == "noise":  # white noise at 5 dB SNR (against the whole file's power)
        _rewrite(path, lambda w, r: w + rng.normal(0, np.sqrt(np.mean(w ** 2) / 10 ** 0.5), w.shape))
    elif how == "transcript":  # a sentence of about the same length that was not said
        path.with_suffix(".txt").write_text(spare_text, encoding="utf-8")
    elif how == "voice":
        speak(path.with_suffix(".txt").read_text(encoding="utf-8"), OTHER_VOICE, path)
    elif how == "quiet":  # 26 dB below the rest
        _rewrite(path, lambda w, r: w * 0.05)
    elif how == "rate":  # the transcript says three times what the audio does
        path.with_suffix(".txt").write_text(" ".join([path.with_suffix(".txt").read_text(encoding="utf-8")] * 3),
                                            encoding="utf-8")
    elif how == "silence":  # 3 s of padding at the end
        _rewrite(path, lambda w, r: np.concatenate([w, np.zeros(3 * r, np.float32)]))
    elif how == "duplicate":
        copy = path.with_name(f"zz_copy_of_{path.name}")
        shutil.copyfile(path, copy)
        shutil.copyfile(path.with_suffix(".txt"), copy.with_suffix(".txt"))
        return copy
    else:
        raise ValueError(how)
    return path


def make_corpus(root: Path, per_speaker: int, damages: dict[str, int], seed: int = 0,
                speakers: dict[str, str] = SPEAKERS) -> dict[Path, str]:
    """root/<speaker>/uNNN.{wav,txt} (`speakers`: folder -> espeak-ng voice); `damages` (e.g. {"clipping": 2})
    applied to distinct files picked at random. Returns every audio file -> the damage it got ("" for a clean one)."""
    texts = sentences(len(speakers) * per_speaker + sum(damages.values()), seed)
    spare = texts[len(speakers) * per_speaker:]
    files: dict[Path, str] = {}
    for s, (speaker, voice) in enumerate(speakers.items()):
        (root / speaker).mkdir(parents=True, exist_ok=True)
        for i in range(per_speaker):
            wav = root / speaker / f"u{i:03d}.wav"
            wav.with_suffix(".txt").write_text(texts[s * per_speaker + i], encoding="utf-8")
            speak(texts[s * per_speaker + i], voice, wav)
            files[wav] = ""
    rng = np.random.default_rng(seed)
    chosen = random.Random(seed).sample(sorted(files), sum(damages.values()))
    hows = [how for how, n in damages.items() for _ in range(n)]
    for path, how, text in zip(chosen, hows, spare):
        damaged = damage(path, how, rng, text)
        files[damaged] = how
    return files
