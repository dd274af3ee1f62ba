"""The Encodec 24 kHz codec (6 kbps, 8 codebooks, 75 frames per second): mono 24 kHz waveform <-> codes (frames, 8).

Weights: "pretrained" (Encodec's download, cached by torch hub), "random" (seeded, for tests and the offline demo)
or a state_dict file. Long waves are encoded in chunks with the codes of one call (`Codec._encode_chunks`).
Reading audio files is audio.py's job; the Vocos decoder is in vocoder.py.
"""

from __future__ import annotations

import functools
import math
import sys
import urllib.error
import warnings
from pathlib import Path

import torch
from lhotse.array import seconds_to_frames

from valle.audio import SAMPLE_RATE
from valle.device import resolve_device
from valle.errors import UserError
from valle.safe_load import torch_load

FRAME_RATE = 75  # codec frames per second
HOP_LENGTH = SAMPLE_RATE // FRAME_RATE  # 320 samples per codec frame
BANDWIDTH_KBPS = 6.0

ENCODEC_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
ENCODEC_URL = f"https://dl.fbaipublicfiles.com/encodec/v0/{ENCODEC_CHECKPOINT}"
RANDOM_SEED = 1234  # "random" codec weights are always the same model
# Audio before a chunk that the encoder's convolutions see (they reach 797 samples = 2.5 frames back).
CONV_CONTEXT_FRAMES = 4


def num_frames(num_samples: int) -> int:
    """Codec frames Encodec 24 kHz produces for `num_samples` samples: ceil(num_samples / 320)."""
    return math.ceil(num_samples / HOP_LENGTH)


def code_frames(duration: float) -> int:
    """Frames stored per cut: round(duration x 75), what lhotse's `cut.load_codes()` reads back. Encodec itself
    yields ceil(samples / 320); a last frame that covers less than half a frame (6.7 ms) of audio is dropped."""
    return seconds_to_frames(duration, 1 / FRAME_RATE)


def _build_encodec():
    from encodec import EncodecModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # encodec uses the deprecated weight_norm
        return EncodecModel.encodec_model_24khz(pretrained=False)


def _probe_signal(generator: torch.Generator, seconds: int = 4) -> torch.Tensor:
    """Speech-like test signal: one second per pitch, harmonics with a syllable-rate envelope, plus noise."""
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE  # (24000,)
    parts = []
    for i in range(seconds):
        tone = sum(torch.sin(2 * math.pi * (100 + 50 * i) * h * t) / h for h in range(1, 20))
        envelope = 0.05 * (1 + torch.sin(2 * math.pi * 3 * t))
        parts.append(tone * envelope + 0.02 * i * torch.randn(SAMPLE_RATE, generator=generator))
    return torch.cat(parts)  # (seconds * 24000,)


def _randomize_codebooks(model, generator: torch.Generator) -> None:
    """Untrained Encodec has all-zero codebooks (k-means init), so every code would be 0. Fill each codebook
    with residual vectors of a probe signal (k-means' own sampling init) so random codes vary like real ones."""
    residual = model.encoder(_probe_signal(generator)[None, None])[0].T  # (frames, 128)
    # A random encoder's output is mostly its constant bias; remove it so that codes are not decided by rounding.
    model.encoder.model[-1].conv.conv.bias -= residual.mean(0)
    residual = residual - residual.mean(0)
    for layer in model.quantizer.vq.layers:
        book = layer._codebook
        picks = torch.randint(0, residual.shape[0], (book.embed.shape[0],), generator=generator)
        jitter = 0.1 * residual.std() * torch.randn(book.embed.shape, generator=generator)  # (1024, 128)
        book.embed.copy_(residual[picks] + jitter)
        book.inited.fill_(1.0)
        residual = residual - book.embed[book.quantize(residual)]


def _warn_random() -> None:
    bar = "!" * 78
    print(f"{bar}\n!! WARNING: --codec-weights random: Encodec has RANDOM weights. Codes are meaningless and\n"
          f"!! decoded audio will be noise. Use this only for tests and the offline demo.\n{bar}", file=sys.stderr)


class Codec:
    """Encodec 24 kHz at 6 kbps: mono 24 kHz waveform <-> codes (frames, 8), 75 frames per second."""

    def __init__(self, model, device: str = "cpu", max_batch_seconds: float = 0.0, weights: str = "custom"):
        """max_batch_seconds: padded audio per encoder call; 0 = 120 s on a GPU, 15 s on a CPU (where batching
        gains nothing and long batches lose: see bench/codec_throughput.py)."""
        model.set_target_bandwidth(BANDWIDTH_KBPS)
        self.model = model.eval().to(device)
        self.device = device
        self.max_batch_seconds = max_batch_seconds or (120.0 if device.startswith("cuda") else 15.0)
        self.weights = weights  # what from_weights was given: codes made with other weights are not reused

    def __reduce__(self):
        """Another process (a shard of the codes stage) builds its copy from the weights again: Encodec's
        weight-norm tensors do not cross process boundaries."""
        if self.weights == "custom":
            raise TypeError("a Codec built from a model object cannot be sent to another process")
        return (functools.partial(Codec.from_weights, max_batch_seconds=self.max_batch_seconds),
                (self.weights, self.device))

    @classmethod
    def from_weights(cls, spec: str = "pretrained", device: str = "cpu", **kw) -> Codec:
        """spec: "pretrained" (encodec's download, cached by torch hub), "random" (seeded, tests and demo only),
        or a path to the Encodec 24 kHz state_dict file."""
        device = resolve_device(device)
        if spec == "random":
            _warn_random()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                model = _build_encodec()
            with torch.no_grad():
                _randomize_codebooks(model, torch.Generator().manual_seed(RANDOM_SEED))
            return cls(model, device, weights=spec, **kw)
        model = _build_encodec()
        state = _pretrained_state() if spec == "pretrained" else _state_from_file(spec)
        _load_strict(model, state, spec)
        return cls(model, device, weights=spec if spec == "pretrained" else str(Path(spec).resolve()), **kw)

    @torch.inference_mode()
    def encode(self, waves: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encode mono 24 kHz waves (each (T,)) in batches of at most `max_batch_seconds` of padded audio.

        Returns one LongTensor (ceil(T / 320), 8) per wave, in input order. Every wave is zero-padded to a
        whole frame (Encodec alone would reflect-pad its last frame); as the model is causal, the padding
        added for batching then leaves the kept frames unchanged: batched and one-by-one codes agree (up to
        float rounding, which can flip a code where two codebook entries are equally near: 1 of 1,056 in the test).
        A wave longer than `max_batch_seconds` is encoded alone, in chunks of that length (`_encode_chunks`),
        so that memory stays bounded whatever the file's length.
        """
        out: list[torch.Tensor | None] = [None] * len(waves)
        max_samples = num_frames(int(self.max_batch_seconds * SAMPLE_RATE)) * HOP_LENGTH
        for batch in length_batches([w.shape[-1] for w in waves], max_samples):
            longest = num_frames(max(waves[i].shape[-1] for i in batch)) * HOP_LENGTH
            x = torch.zeros(len(batch), 1, longest, device=self.device)  # (B, 1, frames * 320)
            for row, i in enumerate(batch):
                x[row, 0, : waves[i].shape[-1]] = waves[i].to(self.device)
            codes = self._encode_chunks(x, max_samples)  # (B, 8, frames)
            for row, i in enumerate(batch):
                out[i] = codes[row, :, : num_frames(waves[i].shape[-1])].T.long().cpu()  # (frames, 8)
        return out

    def _encode_chunks(self, x: torch.Tensor, chunk_samples: int) -> torch.Tensor:
        """Encodec's encoder and quantizer over x (B, 1, N), N a multiple of 320, `chunk_samples` at a time.

        The 24 kHz encoder is causal: convolutions (797 samples of receptive field), a 2-layer LSTM, and a last
        convolution over 7 frames. A chunk is the same computation as one call when each part gets what it
        would have seen: the convolutions get CONV_CONTEXT_FRAMES frames of the audio before the chunk (their
        outputs there are dropped), the LSTM continues from its state at the end of the previous chunk, and
        the last convolution gets the previous chunk's last LSTM frames. A wave that fits one chunk is exactly
        one `model.encode` call; a longer one gets the encoder output of one call up to float rounding (1e-7 on
        values of 1e-2), so its codes are those of one call except where two codebook entries are equally near
        (1 code in 2,224 in the test; 0 of 36,000 for a 60 s clip in 5 s and 15 s chunks). Returns (B, 8, N / 320).
        """
        from encodec.modules.lstm import SLSTM

        layers = list(self.model.encoder.model)
        split = next(i for i, layer in enumerate(layers) if isinstance(layer, SLSTM))
        convs, lstm, tail = (torch.nn.Sequential(*layers[:split]), layers[split],
                             torch.nn.Sequential(*layers[split + 1:]))
        last_conv = layers[-1].conv.conv
        tail_context = (last_conv.kernel_size[0] - 1) * last_conv.dilation[0]  # 6 frames
        state, previous, codes = None, None, []
        for start in range(0, x.shape[-1], chunk_samples):
            left = max(0, start - CONV_CONTEXT_FRAMES * HOP_LENGTH)
            h = convs(x[..., left: start + chunk_samples])[..., (start - left) // HOP_LENGTH:]  # (B, 512, f)
            y, state = lstm.lstm(h.permute(2, 0, 1), state)  # (f, B, 512), as SLSTM.forward with a kept state
            y = (y + h.permute(2, 0, 1)).permute(1, 2, 0) if lstm.skip else y.permute(1, 2, 0)  # (B, 512, f)
            with_context = y if previous is None else torch.cat([previous, y], dim=-1)
            emb = tail(with_context)[..., with_context.shape[-1] - y.shape[-1]:]  # (B, 128, f)
            previous = with_context[..., -tail_context:]
            codes.append(self.model.quantizer.encode(emb, self.model.frame_rate, self.model.bandwidth))  # (8, B, f)
        return torch.cat(codes, dim=-1).transpose(0, 1)  # (B, 8, frames)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (T, 8) -> waveform (T * 320,) float32 at 24 kHz."""
        frames = codes.T.unsqueeze(0).long().to(self.device)  # (1, 8, T)
        return self.model.decode([(frames, None)])[0, 0].float().cpu()  # (T * 320,)


def length_batches(lengths: list[int], max_samples: int) -> list[list[int]]:
    """Group indices, longest first, so that batch size x longest length stays within max_samples."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_samples:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _pretrained_state() -> dict:
    try:
        return torch.hub.load_state_dict_from_url(ENCODEC_URL, map_location="cpu", check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / ENCODEC_CHECKPOINT
        raise UserError(f"cannot download the Encodec 24 kHz weights ({e}); fetch {ENCODEC_URL} on a machine with "
                        f"internet and put it at {cache}, or pass --codec-weights "
                        f"PATH_TO_{ENCODEC_CHECKPOINT}") from None


def _state_from_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--codec-weights {path}: no such file; give pretrained, random, or the path to "
                        f"{ENCODEC_CHECKPOINT} (from {ENCODEC_URL})")
    state = torch_load(p)  # data only: a file that would run code is refused in one line
    if not isinstance(state, dict):
        raise UserError(f"--codec-weights {path}: holds a {type(state).__name__}, not a state_dict")
    return state


def _load_strict(model, state: dict, spec: str) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch
        missing, unexpected = [str(e).splitlines()[-1].strip()], []
    if missing or unexpected:
        raise UserError(f"--codec-weights {spec}: not an Encodec 24 kHz state_dict ({len(missing)} keys missing or "
                        f"wrong, {len(unexpected)} unexpected, e.g. {(missing + unexpected)[:2]}); use "
                        f"{ENCODEC_CHECKPOINT} from {ENCODEC_URL}")
