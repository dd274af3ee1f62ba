"""Failure detectors on real speech (espeak-ng, several voices and sentences) vs noise, silence, a random
Encodec's output, a runaway and a 0.2 s output: the thresholds must hold for all of them, not for one file."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from valle.eval.detectors import Thresholds, detect

SR = 24000
VOICES = ["en-us", "en-gb+f3", "en-gb-scotland+m3", "en-us+f2", "en+m1", "en-us+f4"]
SENTENCES = ["The small boat drifted slowly toward the quiet harbor.", "Yes.",
             "Seven children waited patiently for the morning train."]

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the test speech")


def espeak(text: str, voice: str, tmp_path) -> torch.Tensor:
    out = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    wave, rate = sf.read(str(out), dtype="float32")
    return torchaudio.functional.resample(torch.from_numpy(wave), rate, SR)  # (T,)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[tuple[str, str], torch.Tensor]:
    tmp = tmp_path_factory.mktemp("espeak")
    return {(v, s): espeak(s, v, tmp) for v in VOICES for s in SENTENCES}


def test_speech_of_every_voice_passes(speech):
    for (voice, sentence), wave in speech.items():
        d = detect(wave, SR, expected_seconds=wave.numel() / SR, stopped_at_eos=True)
        assert d.flags == [], f"{voice} {sentence!r}: {d}"
        assert d.flatness < 0.05 and d.modulation_db > 10


def test_speech_in_moderate_noise_still_passes(speech):
    rng = np.random.default_rng(0)
    for voice in VOICES[:3]:
        wave = speech[voice, SENTENCES[0]].numpy()
        noisy = wave + np.sqrt(np.mean(wave ** 2) / 10) * rng.standard_normal(len(wave))  # 10 dB SNR
        assert detect(noisy, SR).flags == [], voice


@pytest.mark.parametrize("level", [0.01, 0.1, 0.5])
def test_white_and_pink_noise_are_noise(level):
    rng = np.random.default_rng(1)
    white = level * rng.standard_normal(3 * SR)
    spectrum = np.fft.rfft(rng.standard_normal(3 * SR)) / np.sqrt(np.arange(1, 3 * SR // 2 + 2))
    pink = np.fft.irfft(spectrum)
    pink = level * pink / pink.std()
    for name, x in (("white", white), ("pink", pink)):
        d = detect(x, SR, expected_seconds=3.0, stopped_at_eos=True)
        assert d.flags == ["noise"], (name, d)


def test_random_codec_output_is_noise(random_codec, single_thread):
    g = torch.Generator().manual_seed(0)
    for frames in (1, 3, 60, 200, 400):  # 1 frame: an AR that stopped at once
        wave = random_codec.decode(torch.randint(0, 1024, (frames, 8), generator=g))  # (frames * 320,)
        d = detect(wave, SR, expected_seconds=frames / 75, stopped_at_eos=True)
        assert "noise" in d.flags, d


def test_silence_and_near_silence_are_silent():
    rng = np.random.default_rng(2)
    for x in (np.zeros(2 * SR), 10 ** (-70 / 20) * rng.standard_normal(2 * SR)):
        d = detect(x, SR, expected_seconds=2.0, stopped_at_eos=True)
        assert d.flags == ["silent"], d
    assert "silent" in detect(np.zeros(0), SR).flags


def test_speech_followed_by_long_silence_is_silent(speech):
    wave = speech["en-us", "Yes."]
    padded = torch.cat([wave, torch.zeros(8 * SR)])
    assert "silent" in detect(padded, SR).flags


def test_runaway_and_too_short(speech):
    wave = speech["en-us", SENTENCES[0]]
    seconds = wave.numel() / SR
    assert detect(wave, SR, expected_seconds=seconds, stopped_at_eos=False).flags == ["runaway"]
    assert detect(wave, SR, expected_seconds=seconds / 3, stopped_at_eos=True).flags == ["runaway"]
    short = wave[int(0.3 * SR):int(0.5 * SR)]  # 0.2 s of speech
    assert "too_short" in detect(short, SR, expected_seconds=seconds, stopped_at_eos=True).flags
    assert "too_short" in detect(short, SR).flags  # shorter than min_seconds, even with nothing expected
    assert detect(wave, SR, expected_seconds=seconds * 3, stopped_at_eos=True).flags == ["too_short"]
    for samples in (320, 100, 0):  # one codec frame, less, nothing: the AR stopped at once
        assert "too_short" in detect(wave[:samples], SR, expected_seconds=seconds, stopped_at_eos=True).flags


def test_thresholds_are_configurable(speech):
    wave = speech["en-us", SENTENCES[0]]
    strict = Thresholds(min_modulation_db=40.0)
    assert detect(wave, SR, thresholds=strict).flags == ["noise"]
