"""valle.audio: any file -> mono 24 kHz float, what it was converted from, unreadable files named."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from valle.audio import SAMPLE_RATE, AudioError, audio_info, level_dbfs, load_audio
from valle.errors import UserError

pytestmark = pytest.mark.usefixtures("single_thread")
CONVERSIONS = [  # (file name, rate, channels, subtype, expected conversions, expected kind)
    ("stereo.wav", 44100, 2, "PCM_16", ["downmixed", "resampled"], "16-bit PCM WAV"),
    ("u8.wav", 16000, 1, "PCM_U8", ["resampled"], "8-bit PCM WAV"),
    ("float.wav", 48000, 1, "FLOAT", ["resampled"], "32-bit float WAV"),
    ("low.wav", 8000, 1, "PCM_16", ["resampled"], "16-bit PCM WAV"),
    ("hi.flac", 22050, 2, "PCM_24", ["downmixed", "resampled"], "24-bit PCM FLAC"),
    ("speech.mp3", 16000, 1, None, ["resampled"], "MP3"),
    ("speech.ogg", 44100, 1, None, ["resampled"], "Vorbis OGG"),
    ("native.wav", 24000, 1, "PCM_16", [], "16-bit PCM WAV"),
]


@pytest.mark.parametrize("name,rate,channels,subtype,conversions,kind", CONVERSIONS)
def test_load_audio_any_format_becomes_mono_24k(tmp_path, write_audio, name, rate, channels, subtype, conversions,
                                                kind):
    path = write_audio(tmp_path / name, seconds=1.0, rate=rate, channels=channels, subtype=subtype)
    wave, info = load_audio(path)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert abs(wave.shape[0] - SAMPLE_RATE) < 0.02 * SAMPLE_RATE  # 1 s at 24 kHz (mp3 adds a little padding)
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert info.conversions() == conversions and info.kind == kind
    assert math.isclose(info.duration, 1.0, abs_tol=0.06)
    chans = "1 channel" if channels == 1 else "2 channels"
    assert info.describe().startswith(f"{chans} at {rate} Hz ({kind}) -> ")
    # the content survives: same level as the mono original (lossy codecs within 1.5 dB)
    reference = level_dbfs(torch.from_numpy(speechlike(1.0, SAMPLE_RATE)))
    expected = reference + (20 * math.log10(0.9) if channels == 2 else 0.0)  # downmix of x and 0.8 x
    assert abs(level_dbfs(wave) - expected) < 1.5


def test_stereo_downmix_is_the_channel_mean(tmp_path):
    left = speechlike(0.5, SAMPLE_RATE)
    right = np.roll(left, 100) * 0.5
    sf.write(str(tmp_path / "lr.wav"), np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    wave, info = load_audio(tmp_path / "lr.wav")
    assert info.conversions() == ["downmixed"]
    np.testing.assert_allclose(wave.numpy(), (left + right) / 2, atol=1e-6)


def test_resampling_keeps_the_pitch(tmp_path):
    t = np.arange(44100) / 44100
    sf.write(str(tmp_path / "a440.wav"), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100)
    wave, _ = load_audio(tmp_path / "a440.wav")
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / wave.shape[0] - 440) < 2


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("name,kind", [
    ("empty.wav", "empty file"),
    ("garbage.wav", "unreadable"),
    ("cut.wav", "truncated"),
    ("cut.flac", "unreadable"),
    ("cut.mp3", "truncated"),
    ("header_only.wav", "unreadable"),
])
def test_unusable_files_raise_audio_error_naming_the_file(tmp_path, write_audio, name, kind):
    path = tmp_path / name
    if name == "empty.wav":
        path.write_bytes(b"")
    elif name == "garbage.wav":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif name == "header_only.wav":
        write_audio(path)
        _truncate(path, keep=0.0006)  # 28 of 48044 bytes: the RIFF header without a data chunk
    else:
        _truncate(write_audio(path, seconds=2.0))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert err.value.kind == kind
    assert str(path) in str(err.value)
    assert isinstance(err.value, UserError)


def test_float_wav_with_nan_is_corrupted(tmp_path):
    data = speechlike(0.5, SAMPLE_RATE)
    data[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), data, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "nan.wav")
    assert err.value.kind == "corrupted"


def test_truncated_ogg_has_no_samples(tmp_path, write_audio):
    path = _truncate(write_audio(tmp_path / "cut.ogg", seconds=2.0))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert err.value.kind == "no samples"  # libsndfile (bundled with the pinned soundfile) decodes nothing


def test_streamed_wav_with_unknown_size_is_not_truncated(tmp_path, write_audio):
    """Streaming writers (ffmpeg to a pipe) leave 0xFFFFFFFF as the data size: that is not a truncation."""
    path = write_audio(tmp_path / "streamed.wav", seconds=0.5)
    data = bytearray(path.read_bytes())
    pos = data.index(b"data") + 4
    data[pos:pos + 4] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    wave, _ = load_audio(path)
    assert abs(wave.shape[0] - SAMPLE_RATE // 2) < 10


def test_audio_info_reads_only_the_header(tmp_path, write_audio):
    info = audio_info(write_audio(tmp_path / "x.flac", seconds=2.0, rate=16000, channels=2))
    assert (info.sample_rate, info.channels, info.num_samples, info.format) == (16000, 2, 32000, "FLAC")


def test_level_dbfs():
    assert level_dbfs(torch.zeros(100)) == -math.inf
    sine = torch.sin(torch.arange(24000) * 2 * math.pi * 100 / 24000)
    assert abs(level_dbfs(sine) - (-3.01)) < 0.05
