"""valle.codec (Encodec codes: shape, batching, chunks, weights) and valle.vocoder (Vocos over the codes)."""

import math
import os
import urllib.error

import pytest
import torch
from conftest import speechlike

from valle import codec
from valle.audio import SAMPLE_RATE
from valle.codec import Codec, num_frames
from valle.errors import UserError
from valle.vocoder import VOCOS_REPO, VocosDecoder

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("samples,frames", [(1, 1), (320, 1), (321, 2), (24000, 75), (24001, 76)])
def test_num_frames_matches_encodec(samples, frames, random_codec):
    assert num_frames(samples) == frames
    assert random_codec.encode([torch.zeros(samples)])[0].shape == (frames, 8)


def test_encode_shapes_dtype_and_range(random_codec):
    waves = [torch.from_numpy(speechlike(s, SAMPLE_RATE, f0=f)) for s, f in [(1.0, 120), (0.31, 200), (0.7, 90)]]
    codes = random_codec.encode(waves)
    for wave, c in zip(waves, codes):
        assert c.dtype == torch.long and c.shape == (math.ceil(wave.shape[0] / 320), 8)
        assert 0 <= c.min() and c.max() < 1024
    assert len(torch.unique(codes[0][:, 0])) > 5  # random codebooks still give varied codes


def test_batched_encoding_equals_one_at_a_time(random_codec):
    waves = [torch.from_numpy(speechlike(s, SAMPLE_RATE, f0=f)) for s, f in [(0.9, 110), (0.25, 210), (0.6, 160)]]
    one_by_one = [random_codec.encode([w])[0] for w in waves]
    assert random_codec.max_batch_seconds == 15.0  # the CPU default
    calls = []
    hook = random_codec.model.encoder.model[0].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        batched = random_codec.encode(waves)
    finally:
        hook.remove()
    assert calls == [3]  # the three waves went through the encoder together
    # the same codes, but where float rounding (batch of 3 vs 1: other kernels) tips a near-tie: 1 of 1,056 here
    for a, b in zip(one_by_one, batched):
        assert a.shape == b.shape and (a == b).float().mean() > 0.99
        assert torch.equal(a[:, 0], b[:, 0])  # the first codebook (the AR's) is far from ties
    assert sum(int((a != b).sum()) for a, b in zip(one_by_one, batched)) <= 2


def test_long_waves_are_encoded_in_chunks_with_the_codes_of_one_call(random_codec, seconds=3.7):
    """A wave longer than max_batch_seconds goes through the encoder in bounded chunks (conv context, LSTM state
    and the last conv's frames carried over). The encoder output is that of one Encodec call over the whole wave
    up to float rounding, so the codes agree except where two codebook entries are equally near (here 1 of 2,224)."""
    g = torch.Generator().manual_seed(1)
    wave = (torch.from_numpy(speechlike(seconds, SAMPLE_RATE, f0=130))
            + 0.02 * torch.randn(int(seconds * 24000), generator=g))
    x = torch.zeros(1, 1, num_frames(wave.shape[0]) * 320)  # (1, 1, frames * 320)
    x[0, 0, : wave.shape[0]] = wave
    chunked = Codec(random_codec.model, max_batch_seconds=1.0, weights="random")
    seen, embeddings = [], []
    hooks = [chunked.model.encoder.model[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1])),
             chunked.model.encoder.model[-1].register_forward_hook(lambda m, i, o: embeddings.append(o))]
    try:
        codes = chunked.encode([wave])[0]  # (frames, 8)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.inference_mode():
        one_call = random_codec.model.encode(x)[0][0][0].T  # (frames, 8)
        whole = random_codec.model.encoder(x)  # (1, 128, frames)
    # each chunk's last conv also ran over the previous chunk's last 6 frames
    pieces = [e[..., 6 * (i > 0):] for i, e in enumerate(embeddings)]
    assert torch.allclose(torch.cat(pieces, dim=-1), whole, rtol=0, atol=1e-6)
    assert codes.shape == one_call.shape and (codes == one_call).float().mean() > 0.999
    assert len(seen) == math.ceil(num_frames(wave.shape[0]) / 75)  # one encoder call per second of audio
    assert max(seen) <= 24000 + codec.CONV_CONTEXT_FRAMES * 320  # a chunk and its context, never the whole wave


def test_length_batches_respect_the_budget():
    # longest first; a batch grows while count x its longest stays within the budget
    assert codec.length_batches([100, 50, 400, 300, 10], max_samples=600) == [[2], [3, 0], [1, 4]]
    assert codec.length_batches([100, 50, 400, 300, 10], max_samples=10**6) == [[2, 3, 0, 1, 4]]
    assert codec.length_batches([700, 20], max_samples=600) == [[0], [1]]  # too long alone: a batch of its own


def test_decode_length(random_codec):
    codes = torch.randint(0, 1024, (12, 8))  # (T, 8)
    wave = random_codec.decode(codes)
    assert wave.shape == (12 * 320,) and wave.dtype == torch.float32


def test_random_weights_are_seeded_and_warn(capsys, random_codec):
    again = Codec.from_weights("random")
    assert "RANDOM weights" in capsys.readouterr().err
    wave = torch.from_numpy(speechlike(0.5, SAMPLE_RATE))
    assert torch.equal(again.encode([wave])[0], random_codec.encode([wave])[0])


def test_weights_from_a_state_dict_file(tmp_path, random_codec):
    path = tmp_path / "encodec_24khz.th"
    torch.save(random_codec.model.state_dict(), path)
    loaded = Codec.from_weights(str(path))
    wave = torch.from_numpy(speechlike(0.4, SAMPLE_RATE))
    assert torch.equal(loaded.encode([wave])[0], random_codec.encode([wave])[0])


def test_bad_weight_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        Codec.from_weights(str(tmp_path / "missing.th"))
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.th")
    with pytest.raises(UserError, match="not an Encodec 24 kHz state_dict"):
        Codec.from_weights(str(tmp_path / "other.th"))
    (tmp_path / "text.th").write_text("not a checkpoint")
    with pytest.raises(UserError, match="text.th: not a readable PyTorch checkpoint"):
        Codec.from_weights(str(tmp_path / "text.th"))
    torch.save({"weight": torch.zeros(1), "hook": os.system}, tmp_path / "code.th")
    with pytest.raises(UserError) as err:  # a file that would run code: one line, nothing run
        Codec.from_weights(str(tmp_path / "code.th"))
    assert "refused" in str(err.value) and "system" in str(err.value) and "\n" not in str(err.value)
    torch.save([1, 2], tmp_path / "list.th")
    with pytest.raises(UserError, match="not a state_dict"):
        Codec.from_weights(str(tmp_path / "list.th"))


def test_pretrained_offline_says_what_to_download(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError) as err:
        Codec.from_weights("pretrained")
    assert codec.ENCODEC_URL in str(err.value) and "--codec-weights" in str(err.value)


def test_vocos_offline_says_what_to_download(monkeypatch):
    vocos = pytest.importorskip("vocos")

    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    assert vocos
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(UserError) as err:
        VocosDecoder.from_weights("pretrained")
    assert VOCOS_REPO in str(err.value)


def test_vocos_decoder_from_a_folder(tmp_path, monkeypatch):
    """A tiny Vocos (random weights) in the released folder layout decodes (T, 8) codes to T * 320 samples."""
    vocos = pytest.importorskip("vocos")
    from encodec import EncodecModel

    untrained = codec._build_encodec()
    monkeypatch.setattr(EncodecModel, "encodec_model_24khz", staticmethod(lambda pretrained=True: untrained))
    (tmp_path / "config.yaml").write_text(
        "feature_extractor:\n  class_path: vocos.feature_extractors.EncodecFeatures\n"
        "  init_args: {encodec_model: encodec_24khz, bandwidths: [1.5, 3.0, 6.0, 12.0]}\n"
        "backbone:\n  class_path: vocos.models.VocosBackbone\n"
        "  init_args: {input_channels: 128, dim: 32, intermediate_dim: 64, num_layers: 1, adanorm_num_embeddings: 4}\n"
        "head:\n  class_path: vocos.heads.ISTFTHead\n"
        "  init_args: {dim: 32, n_fft: 1280, hop_length: 320, padding: same}\n")
    model = vocos.Vocos.from_hparams(str(tmp_path / "config.yaml"))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("feature_extractor.encodec.")}
    torch.save(state, tmp_path / "pytorch_model.bin")
    wave = VocosDecoder.from_weights(str(tmp_path)).decode(torch.randint(0, 1024, (10, 8)))
    assert wave.shape == (10 * 320,) and torch.isfinite(wave).all()


@pytest.mark.parametrize("part, entry", [
    ("feature_extractor", "  class_path: subprocess.Popen\n  init_args: {args: [touch, MARKER]}\n"),
    ("backbone", "  class_path: vocos.models.VocosBackbone\n  init_args: {input_channels: 128, dim: 32, "
                 "intermediate_dim: 64, num_layers: {class_path: subprocess.Popen, "
                 "init_args: {args: [touch, MARKER]}}}\n"),
])
def test_a_crafted_vocos_config_runs_nothing(tmp_path, part, entry):
    """class_path entries are checked against the Encodec Vocos classes before anything is imported or built
    (vocos' own from_hparams would run subprocess.Popen here and create MARKER)."""
    pytest.importorskip("vocos")
    marker = tmp_path / "MARKER"
    parts = {"feature_extractor": "  class_path: vocos.feature_extractors.EncodecFeatures\n",
             "backbone": "  class_path: vocos.models.VocosBackbone\n", "head": "  class_path: vocos.heads.ISTFTHead\n"}
    parts[part] = entry.replace("MARKER", str(marker))
    (tmp_path / "config.yaml").write_text("".join(f"{name}:\n{text}" for name, text in parts.items()))
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="refused") as err:
        VocosDecoder.from_weights(str(tmp_path))
    assert "\n" not in str(err.value)
    assert not marker.exists()
