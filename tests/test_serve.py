"""The speech API (valle serve): batched equals solo, adapter voices on one base, cancelled work stops, the official
openai client, every format decoded, streams that decode whole or are visibly cut, hostile bodies, a client gone
mid-stream, timeouts, 429, SIGTERM draining, the limits' checks. Servers run on 127.0.0.1 with a free port, started
and stopped by the tests; every wait is bounded."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from valle.config import Sampling
from valle.inference import Request, generate, load_prompt
from valle.serve.formats import STREAMABLE

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "vallex_tiny"
KEY = "test-key"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
FRAME = 320  # samples per frame at 24 kHz


def tiny_model():
    from valle.models.checkpoint import load_model

    return load_model(TINY / "tiny.pt", nhead=4)[0]


def make_adapter(model, path: Path, seed: int) -> Path:
    """An adapter file of the tiny base with random (non-zero) pairs on both halves."""
    from valle.models.adapters import AdapterSpec, attach, base_identity
    from valle.models.checkpoint import save_adapter

    spec = AdapterSpec(rank=2, alpha=4.0, targets=("attn", "ffn"), halves=("ar", "nar"))
    lora = attach(copy.deepcopy(model), spec)
    g = torch.Generator().manual_seed(seed)
    for pair in lora.pairs:
        pair.B.data = torch.randn(pair.B.shape, generator=g) * 0.5
    return save_adapter(path, spec, lora.adapter_state_dict(), base_identity(model, spec.halves, "tiny.pt"))


def voices_folder(root: Path, model) -> Path:
    root.mkdir()
    (root / "prompt.npz").write_bytes((TINY / "prompt.npz").read_bytes())
    for name, seed in (("alice", 1), ("bob", 2)):
        make_adapter(model, root / f"{name}.safetensors", seed)
        spec = {"prompt": "prompt.npz", "adapters": [f"{name}.safetensors"], "sampling": {"top_k": 1}}
        (root / f"{name}.json").write_text(json.dumps(spec))
    (root / "plain.json").write_text(json.dumps({"prompt": "prompt.npz"}))
    return root


# ---- the engine in this process


class Collect:
    def __init__(self):
        self.results, self.event = {}, threading.Condition()

    def callback(self, key):
        def done(result):
            with self.event:
                self.results[key] = result
                self.event.notify_all()
        return done

    def wait(self, n: int, timeout: float = 120):
        end = time.monotonic() + timeout
        with self.event:
            while len(self.results) < n:
                assert self.event.wait(max(end - time.monotonic(), 0)), f"only {len(self.results)} of {n} done"
        return self.results


class CodesOnly:
    """The waveform is the codec's business; codes are compared here. Counts the waveforms made."""

    def __init__(self):
        self.made = 0

    def decode(self, codes):
        self.made += 1
        return torch.zeros(len(codes) * FRAME)


def engine_for(model, bank, max_batch=8, decoder=None):
    from valle.serve.engine import Engine
    from valle.serve.limits import Limits
    from valle.serve.metrics import Metrics

    return Engine(model, bank, decoder or CodesOnly(), Metrics(), Limits(max_batch=max_batch))


def requests(tokenizer, prompt):
    texts = ["Hello there.", "How are you today, my friend?", "One.", "This is a test of batching.", "Good night."]
    out = []
    for i, text in enumerate(texts):
        tok = tokenizer.encode(text, "en")
        out.append(Request(list(tok.ids), list(tok.languages), prompt if i % 2 == 0 else None))
    return out


def onnx_engine_of(model, folder: Path):
    """`model` exported to `folder` (fp32) and loaded by the ONNX Runtime engine."""
    pytest.importorskip("onnxruntime")
    from valle.onnx_engine.export import export
    from valle.onnx_engine.runtime import OnnxVALLE

    export(model, folder)
    return OnnxVALLE.load(folder)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
@pytest.mark.parametrize("sampling", [Sampling(top_k=1), Sampling(top_k=20, temperature=0.9),
                                      Sampling(top_k=20, min_frames=35)], ids=["greedy", "top20", "min-frames"])
def test_batched_requests_equal_solo_generation(single_thread, sampling, engine, tmp_path):
    """Jobs joining a running batch at different steps give the codes of generating each alone with its seed, with
    either engine (the ONNX engine's rows share its host KV cache)."""
    from valle.serve.engine import Job
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    def frames(i: int) -> int:
        return 40 if i < 3 else 40 + 7 * i

    model, tokenizer = tiny_model(), get_tokenizer("vallex")
    if sampling.min_frames:  # EOS made likely (the tiny model's random weights never stop), so that the rule works
        boost = torch.zeros(model.ar_predict_layer.out_features)
        boost[model.eos] = 15.0
        model.ar_predict_layer.register_forward_hook(lambda layer, inputs, logits: logits + boost)  # exported too
    if engine == "onnxruntime":
        model = onnx_engine_of(model, tmp_path / "onnx")
    reqs = requests(tokenizer, load_prompt(TINY / "prompt.npz"))
    engine = engine_for(model, VoiceBank(None, model, tokenizer, None), max_batch=3)  # some wait, some join late
    got, nar_batches, nar = Collect(), [], model.generate_nar
    model.generate_nar = lambda *a: nar_batches.append(len(a[-1])) or nar(*a)
    own = [dataclasses.replace(sampling, seed=100 + i, max_frames=frames(i)) for i in range(len(reqs))]
    jobs = [Job(r, (), own[i], done=got.callback(i)) for i, r in enumerate(reqs)]
    for job in jobs[:3]:  # these three join together and finish together (one NAR batch)
        engine.submit(job)
    engine.start()
    try:
        for job in jobs[3:]:  # these wait for a row, then join a running batch
            time.sleep(0.05)
            engine.submit(job)
        results = got.wait(len(reqs))
    finally:
        engine.stop()
    assert nar_batches[0] == 3
    for i, r in enumerate(reqs):
        solo = generate(model, [r], own[i])[0]
        assert torch.equal(results[i][0], solo), f"request {i}"
        assert len(solo) >= sampling.min_frames
    if sampling.min_frames:  # without the rule, some requests stop earlier
        free = [len(generate(model, [r], dataclasses.replace(own[i], min_frames=0))[0]) for i, r in enumerate(reqs)]
        assert min(free) < sampling.min_frames, free
    assert engine.metrics.batch_size.sum > engine.metrics.batch_size.count  # some steps ran several rows


def test_two_adapter_voices_share_one_base_without_reload(tmp_path, single_thread):
    """alice and bob (different LoRA adapters) interleaved: each equals the base with its adapter merged; the base
    itself is never changed or reloaded."""
    from valle.models.adapters import fingerprint
    from valle.models.checkpoint import merge_adapter_files
    from valle.serve.engine import Job
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    model, tokenizer = tiny_model(), get_tokenizer("vallex")
    before = {h: fingerprint(model, h) for h in ("ar", "nar")}
    bank = VoiceBank(voices_folder(tmp_path / "voices", model), model, tokenizer, None)
    assert sorted(bank.voices) == ["alice", "bob", "default", "plain"]
    engine = engine_for(model, bank)
    r = requests(tokenizer, None)[1]
    order = ["alice", "bob", "alice", "plain", "bob"]
    got = Collect()
    engine.start()
    try:
        for i, name in enumerate(order):
            v = bank.get(name)
            engine.submit(Job(Request(r.text_ids, r.languages, v.prompt), v.adapters,
                              Sampling(top_k=1, seed=0, max_frames=60), got.callback(i)))
        results = got.wait(len(order))
    finally:
        engine.stop()
    assert {h: fingerprint(model, h) for h in ("ar", "nar")} == before
    expected = {}
    for name in ("alice", "bob", "plain"):
        merged = tiny_model()
        v = bank.get(name)
        merge_adapter_files(merged, [tmp_path / "voices" / a for a in v.adapters], base_name="tiny.pt")
        expected[name] = generate(merged, [Request(r.text_ids, r.languages, v.prompt)],
                                  Sampling(top_k=1, seed=0, max_frames=60))[0]
    assert not torch.equal(expected["alice"], expected["bob"])
    for i, name in enumerate(order):
        assert torch.equal(results[i][0], expected[name]), f"{i}: {name}"


def test_adapter_voices_on_an_int8_base_are_refused_in_one_line(tmp_path):
    """An int8 base takes no per-request adapters (its weights are int8, the LoRA's would be cast to int8): the voice
    is refused at start with the precisions that serve it, not a traceback or a silently wrong voice."""
    from valle.errors import UserError
    from valle.models.precision import apply_precision
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    model = tiny_model()
    folder = voices_folder(tmp_path / "voices", model)
    with pytest.raises(UserError, match=r"adapter voice needs a float base.*--precision fp32 or bf16"):
        VoiceBank(folder, apply_precision(model, "int8"), get_tokenizer("vallex"), None)


def test_adapter_voices_on_an_onnx_export_are_refused_in_one_line(tmp_path, single_thread):
    """An ONNX export's weights are fixed: an adapter voice cannot be hooked on, and says what serves it."""
    from valle.errors import UserError
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    model = tiny_model()
    folder = voices_folder(tmp_path / "voices", model)
    with pytest.raises(UserError, match=r"alice.safetensors: an adapter voice needs the torch engine; this server "
                                        r"runs an ONNX export.*--engine torch$"):
        VoiceBank(folder, onnx_engine_of(model, tmp_path / "onnx"), get_tokenizer("vallex"), None)


def test_a_stream_whose_client_left_before_it_began_gives_its_place_back(tmp_path):
    """The client is gone before the first byte: the stream's body never starts, and its request must still leave
    the count of requests in progress (else each such client takes a place for good, and the server ends up
    answering every request with 429)."""
    import asyncio
    import contextlib

    from starlette.requests import ClientDisconnect

    from valle.serve.app import create_app
    from valle.serve.metrics import Metrics
    from valle.serve.service import Service
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    model, tokenizer = tiny_model(), get_tokenizer("vallex")
    bank = VoiceBank(None, model, tokenizer, None)
    service = Service(model, tokenizer, bank, engine_for(model, bank), Metrics())  # the engine is never started
    body = json.dumps({"model": "tts-1", "input": "Hello.", "voice": "default", "stream": True,
                       "response_format": "pcm"}).encode()
    path = "/v1/audio/speech"
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):  # as uvicorn's send once the connection is closed
        raise OSError("the client is gone")

    for _ in range(3):
        with contextlib.suppress(ClientDisconnect):  # what uvicorn does with it
            asyncio.run(create_app(service)(scope, receive, send))
        messages.append({"type": "http.request", "body": body, "more_body": False})
    assert service.active == 0


def test_a_cancelled_job_costs_nothing_from_its_next_step(single_thread):
    """Cancelled while its waveform waits for the decoding thread, a job gets none; cancelled in the AR batch, it runs
    at most the step already under way."""
    from valle.serve.engine import Job
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    class Gated(CodesOnly):  # the first waveform holds the decoding thread until the test opens the gate
        def __init__(self):
            super().__init__()
            self.started, self.gate = threading.Event(), threading.Event()

        def decode(self, codes):
            self.started.set()
            assert self.gate.wait(60)
            return super().decode(codes)

    model, tokenizer = tiny_model(), get_tokenizer("vallex")
    decoder, got = Gated(), Collect()
    engine = engine_for(model, VoiceBank(None, model, tokenizer, None), max_batch=4, decoder=decoder)
    r = requests(tokenizer, None)[0]
    short = [Job(r, (), Sampling(top_k=1, seed=i, max_frames=20), got.callback(i)) for i in range(3)]
    long = Job(r, (), Sampling(top_k=1, seed=9, max_frames=1500), got.callback("long"))
    for job in short:  # they finish together: the first waveform is made, the other two wait for the thread
        engine.submit(job)
    engine.start()
    try:
        assert decoder.started.wait(60)
        for job in short[1:]:
            engine.cancel(job)
        engine.submit(long)
        end = time.monotonic() + 60
        while len(long.frames) < 10 and time.monotonic() < end:
            time.sleep(0.01)
        engine.cancel(long)
        at_cancel = len(long.frames)
        decoder.gate.set()
        got.wait(1)
    finally:
        decoder.gate.set()
        engine.stop()
    assert decoder.made == 1 and list(got.results) == [0]
    assert 10 <= len(long.frames) <= at_cancel + 1 and engine.running == 0


def test_a_draw_that_fails_fails_its_job_alone(single_thread):
    """Sampling that makes a row's probabilities NaN (a temperature that overflows the scores) fails that job; the
    engine thread lives on and the job beside it is served."""
    from valle.serve.engine import Job
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    model, tokenizer = tiny_model(), get_tokenizer("vallex")
    engine, got = engine_for(model, VoiceBank(None, model, tokenizer, None)), Collect()
    r = requests(tokenizer, None)[0]
    engine.submit(Job(r, (), Sampling(temperature=5e-324, seed=0, max_frames=10), got.callback("bad")))
    engine.submit(Job(r, (), Sampling(top_k=1, seed=0, max_frames=10), got.callback("good")))
    engine.start()
    try:
        results = got.wait(2)
    finally:
        engine.stop()
    assert isinstance(results["bad"], RuntimeError) and len(results["good"][0]) == 10


def test_voice_names_are_names(tmp_path):
    from valle.errors import UserError
    from valle.serve.voices import BadVoiceName, VoiceBank
    from valle.storage import partial_path

    model = tiny_model()
    bank = VoiceBank(None, model, None, None)
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65, None):
        with pytest.raises(BadVoiceName):
            bank.get(bad)
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "evil.json").write_text(json.dumps({"prompt": "../prompt.npz"}))
    with pytest.raises(UserError, match="must be the name of a file"):
        VoiceBank(folder, model, None, None)
    kept = tmp_path / "kept"
    kept.mkdir()
    partial_path(kept / "kim.json").write_text('{"langu')  # a voice write killed half way (atomic_write's file)
    assert sorted(VoiceBank(kept, model, None, None).voices) == ["default"]


# ---- a real server


class Server:
    """valle serve in a subprocess on 127.0.0.1, a free port."""

    def __init__(self, tmp: Path, *args: str):
        self.log = open(tmp / "server.log", "w+")
        cmd = [sys.executable, "-m", "valle", "serve", "--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4",
               "--codec-weights", "random", "--device", "cpu", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=ENV, cwd=tmp)
        end = time.monotonic() + 90
        while time.monotonic() < end and self.proc.poll() is None:
            text = (tmp / "server.log").read_text()
            if "listening on http://" in text:
                self.url = text.split("listening on ")[1].split()[0]
                return
            time.sleep(0.2)
        self.stop()
        raise AssertionError("server did not start: " + (tmp / "server.log").read_text()[-3000:])

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    s = Server(tmp, "--voices", str(voices_folder(tmp / "voices", tiny_model())), "--api-key", KEY,
               "--max-frames", "1500")
    yield s
    assert s.stop() == 0, s.output()[-3000:]
    assert "Traceback" not in s.output()


def client(server):
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def speak(server, key=KEY, **body) -> httpx.Response:
    body = {"model": "tts-1", "input": "Hello there.", "voice": "alice", "response_format": "wav", **body}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"})


def wav_frames(data: bytes) -> int:
    wave, rate = sf.read(io.BytesIO(data))
    assert rate == 24000 and len(wave) % FRAME == 0
    return len(wave) // FRAME


def below(wave: np.ndarray, hz: float) -> np.ndarray:
    """The part of a 24 kHz wave below `hz`."""
    spectrum = np.fft.rfft(wave)
    spectrum[int(hz / 12000 * len(spectrum)):] = 0
    return np.fft.irfft(spectrum, len(wave))


# Each lossy format against the wav answer, within what its codec keeps of the (noise-like) random-codec audio:
# flac is exact to the 16-bit sample; opus keeps the wave (correlation 0.97-0.99 measured); mp3 at 24 kHz keeps
# the band below about 8 kHz (below 4 kHz: correlation 0.997 measured, the whole band only 0.16).
CLOSE = {"flac": lambda x, ref: np.abs(x - ref).max() <= 1 / 32768,
         "opus": lambda x, ref: np.corrcoef(x, ref)[0, 1] > 0.9,
         "mp3": lambda x, ref: np.corrcoef(below(x, 4000), below(ref, 4000))[0, 1] > 0.98}


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_openai_client_speech_and_its_streaming_response(server):
    c = client(server)
    one = c.audio.speech.create(model="tts-1", voice="alice", input="Hello there. How are you?",
                                response_format="wav", extra_body={"max_frames": 30, "seed": 3})
    assert wav_frames(one.content) == 60  # two sentences of 30 frames (random weights never stop early)
    with c.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alice", input="Hello there. How are you?", response_format="wav",
            extra_body={"max_frames": 30, "seed": 3, "stream": True}) as r:
        streamed = b"".join(r.iter_bytes())
    assert np.array_equal(sf.read(io.BytesIO(streamed))[0], sf.read(io.BytesIO(one.content))[0])
    pcm = c.audio.speech.create(model="tts-1", voice="bob", input="Hi.", response_format="pcm",
                                extra_body={"max_frames": 10})
    assert len(pcm.content) == 10 * FRAME * 2
    wav = sf.read(io.BytesIO(speak(server, voice="plain", input="Hi.", max_frames=10, seed=4).content))[0]
    for fmt, close in CLOSE.items():
        data = c.audio.speech.create(model="tts-1", voice="plain", input="Hi.", response_format=fmt,
                                     extra_body={"max_frames": 10, "seed": 4}).content
        decoded, rate = sf.read(io.BytesIO(data))
        assert rate == 24000 and len(decoded) == len(wav) == 10 * FRAME, fmt
        assert close(decoded, wav), fmt


def decode_ffmpeg(data: bytes, fmt: str) -> np.ndarray:
    raw = ["-f", "s16le", "-ar", "24000", "-ac", "1"] if fmt == "pcm" else []
    out = subprocess.run(["ffmpeg", "-v", "error", *raw, "-i", "pipe:0", "-f", "s16le", "-ac", "1", "pipe:1"],
                         input=data, capture_output=True, check=True).stdout
    return np.frombuffer(out, "<i2")


def decode_soundfile(data: bytes, fmt: str) -> np.ndarray:
    raw = {"format": "RAW", "samplerate": 24000, "channels": 1, "subtype": "PCM_16", "endian": "LITTLE"}
    return sf.read(io.BytesIO(data), dtype="int16", **(raw if fmt == "pcm" else {}))[0]


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_every_streamed_format_decodes_whole_from_the_bytes_as_they_arrive(server):
    """Three sentences streamed: the bytes concatenated as they came decode, with libsndfile and with ffmpeg, to
    every sample of the answer sent whole; formats that cannot stream are refused."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (tools/install_system_deps.sh)")
    body = {"input": "Hello there. How are you? Fine.", "max_frames": 20, "seed": 5}
    whole = sf.read(io.BytesIO(speak(server, **body).content), dtype="int16")[0]
    assert len(whole) == 3 * 20 * FRAME
    for fmt in STREAMABLE:
        request = {"model": "tts-1", "voice": "alice", "response_format": fmt, "stream": True, **body}
        with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=request, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status_code == 200
            chunks = list(r.iter_raw())
        assert len(chunks) > 1, fmt  # it came in pieces
        for decode in (decode_soundfile, decode_ffmpeg):
            assert np.array_equal(decode(b"".join(chunks), fmt), whole), (fmt, decode.__name__)
    for fmt in sorted(set(CLOSE) - set(STREAMABLE)):
        r = speak(server, response_format=fmt, stream=True, **body)
        assert r.status_code == 400 and "cannot be streamed" in r.json()["error"]["message"], fmt


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_voices_list_and_a_new_voice_from_a_recording(server, tmp_path, write_audio):
    headers = {"Authorization": f"Bearer {KEY}"}
    names = [v["name"] for v in httpx.get(f"{server.url}/v1/voices", headers=headers).json()["data"]]
    assert names == ["alice", "bob", "default", "plain"]
    wav = write_audio(tmp_path / "me.wav", seconds=3.0, rate=16000, channels=2)
    r = httpx.post(f"{server.url}/v1/voices", headers=headers, timeout=60,
                   data={"name": "me", "transcript": "Hello there.", "language": "en"},
                   files={"file": ("me.wav", wav.read_bytes(), "audio/wav")})
    assert r.status_code == 201, r.text
    assert r.json()["prompt_seconds"] == pytest.approx(3.0, abs=0.02)
    assert speak(server, voice="me", max_frames=10).status_code == 200
    again = httpx.post(f"{server.url}/v1/voices", headers=headers, timeout=60,
                       data={"name": "../me", "transcript": "x"}, files={"file": ("me.wav", wav.read_bytes())})
    assert again.status_code == 400 and "never a path" in again.json()["error"]["message"]


BAD = {
    "bad JSON": ({"content": b"{not json"}, 400, "not valid JSON"),
    "unknown voice": ({"voice": "nobody"}, 404, "not found"),
    "path voice": ({"voice": "../alice"}, 400, "never a path"),
    "100k characters": ({"input": "word " * 20000}, 400, "characters"),
    "NaN sampling": ({"content": b'{"model": "tts-1", "input": "Hi.", "voice": "alice", "temperature": NaN}'},
                     400, "finite"),
    "empty input": ({"input": "   "}, 400, "empty"),
    "speed": ({"speed": 1.5}, 400, "only 1.0"),
    "unknown field": ({"pitch": 3}, 400, "pitch"),
    "top_p 0": ({"top_p": 0.0}, 400, "top_p"),
    "too many frames": ({"max_frames": 5000}, 400, "max_frames"),
    "zero frames": ({"max_frames": 0}, 400, "max_frames"),
    "flac stream": ({"response_format": "flac", "stream": True}, 400, "cannot be streamed"),
    "mp3 stream": ({"response_format": "mp3", "stream": True}, 400, "stream wav or pcm"),
    "aac": ({"response_format": "aac"}, 400, "response_format"),
    "wrong key": ({"key": "nope"}, 401, "API key"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_bad_input_gets_an_openai_error_and_the_server_stays_up(server, case):
    change, status, words = BAD[case]
    change = dict(change)
    if "content" in change:
        r = httpx.post(f"{server.url}/v1/audio/speech", content=change["content"], timeout=30,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    else:
        r = speak(server, **change)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"] and error["type"] and "Traceback" not in r.text
    assert speak(server, max_frames=5).status_code == 200


def hostile_bodies() -> dict[str, tuple[bytes, str]]:
    """Bodies that are not valid requests, as (body, content type): whatever the parser makes of them, a 4xx."""
    good = {"model": "tts-1", "input": "Hi.", "voice": "plain", "response_format": "wav", "max_frames": 5}
    js = "application/json"
    out = {
        "5000-digit seed": (b'{"model": "tts-1", "input": "Hi.", "voice": "alice", "seed": ' + b"9" * 5000 + b"}",
                            js),
        "5000-digit top_k": (b'{"model": "tts-1", "input": "Hi.", "voice": "alice", "top_k": ' + b"9" * 5000 + b"}",
                             js),
        "huge seed": (json.dumps({**good, "seed": 2**70}).encode(), js),
        "negative seed": (json.dumps({**good, "seed": -1}).encode(), js),
        "1e400 temperature": (json.dumps(good)[:-1].encode() + b', "temperature": 1e400}', js),
        "tiny temperature": (json.dumps({**good, "temperature": 5e-324}).encode(), js),
        "nested 100000 deep": (b"[" * 100000 + b"]" * 100000, js),
        "input nested 100000 deep": (b'{"input": ' + b"[" * 100000 + b"]" * 100000 + b"}", js),
        "input nested 500 deep": (json.dumps({**good, "input": [[[[]]]]}).replace("[[[[]]]]", "[" * 500 + "]" * 500)
                                  .encode(), js),
        "bad UTF-8": (b'{"model": "tts-1", "input": "\xff\xfe", "voice": "alice"}', js),
        "empty body": (b"", js),
        "form body": (b"model=tts-1&input=Hi&voice=alice", "application/x-www-form-urlencoded"),
        "JSON as text/plain": (json.dumps(good).encode(), "text/plain"),
        "JSON without a content type": (json.dumps(good).encode(), ""),
    }
    for value in ([], {}, "x", 1, 1.5, True, None):
        out[f"body {value!r}"] = (json.dumps(value).encode(), js)
    strings = ("model", "input", "voice", "response_format", "instructions", "stream_format", "language")
    for name in (*strings, "speed", "stream", "seed", "top_k", "top_p", "temperature", "max_frames"):
        scalar = 1.5 if name in strings else "true" if name == "stream" else "1"  # of the wrong kind
        for value in ([1], {"a": 1}, scalar, None if name == "stream" else True):
            out[f"{name}={value!r}"] = (json.dumps({**good, name: value}).encode(), js)
    return out


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_hostile_bodies_all_get_a_4xx_error_object(server):
    """Huge numbers, deep nesting, every field with wrong types, non-objects, bad UTF-8, wrong content types: each a
    4xx with OpenAI's error object (a 5xx would mean the server failed), and the server serves on."""
    bodies = hostile_bodies()
    wrong = {}
    with httpx.Client(timeout=60) as http:
        for case, (content, content_type) in bodies.items():
            headers = {"Authorization": f"Bearer {KEY}", **({"Content-Type": content_type} if content_type else {})}
            r = http.post(f"{server.url}/v1/audio/speech", content=content, headers=headers)
            error = r.json().get("error", {}) if r.headers.get("content-type") == "application/json" else {}
            if not (400 <= r.status_code < 500 and error.get("message") and error.get("type")):
                wrong[case] = (r.status_code, r.text[:200])
    assert not wrong, wrong
    r = httpx.post(f"{server.url}/v1/audio/speech", content=bodies["JSON as text/plain"][0], timeout=30,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"})
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"]["message"]
    assert "text/plain" in r.json()["error"]["message"]
    assert speak(server, max_frames=5).status_code == 200


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_body_too_large_and_health_without_key(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", content=b"x" * (17 << 20), timeout=30,
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    for name in ("valle_requests_total", "valle_queue_length", "valle_batch_rows_bucket", "valle_request_seconds",
                 "valle_ar_frames_per_second"):
        assert name in text


def metric(server, name: str) -> int:
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    return int(next((line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")), 0))


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_a_client_gone_mid_stream_frees_its_row(server):
    """The second sentence stops when the client goes, not when it is done."""
    body = {"model": "tts-1", "input": "One long sentence. " * 20, "voice": "alice", "response_format": "pcm",
            "stream": True, "max_frames": 1500}
    before = metric(server, "valle_ar_frames_total")
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        next(r.iter_raw())  # the first sentence arrived; the second is being made
    end = time.monotonic() + 30
    while time.monotonic() < end:
        health = httpx.get(f"{server.url}/health").json()
        if health["active"] == 0 and health["running"] == 0 and health["queued"] == 0:
            break
        time.sleep(0.1)
    assert health["active"] == health["running"] == health["queued"] == 0, health
    # the first sentence's 1500 frames (1499 AR steps: the first frame comes from the prefill), and less than half of
    # the second one's (without cancelling, it runs to its 1500)
    assert 1499 <= metric(server, "valle_ar_frames_total") - before < 1499 + 750


LONG = {"model": "tts-1", "input": "A sentence to speak. " * 64, "voice": "default", "response_format": "wav",
        "max_frames": 60, "seed": 1}  # 4 x 16 rows of 60 frames: a second or so; then 64 waveforms: some seconds
SMALL = {"model": "tts-1", "input": "Hi.", "voice": "default", "response_format": "wav", "max_frames": 5}


@pytest.fixture(scope="module")
def hurried(tmp_path_factory):
    """A server that gives each request 2.5 s."""
    s = Server(tmp_path_factory.mktemp("hurried"), "--request-timeout", "2.5")
    yield s
    assert s.stop() == 0, s.output()[-3000:]
    assert "Traceback" not in s.output()


def small_seconds(server) -> float:
    start = time.monotonic()
    assert httpx.post(f"{server.url}/v1/audio/speech", json=SMALL, timeout=60).status_code == 200
    return time.monotonic() - start


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_a_timed_out_or_abandoned_request_leaves_no_work_behind(hurried):
    """After a 504 and after a client that gave up, a small request is served as fast as alone: the long one's
    rows, NAR and waveforms were dropped (before, the decoding thread went on with the waveforms it had queued)."""
    alone = min(small_seconds(hurried) for _ in range(2))
    r = httpx.post(f"{hurried.url}/v1/audio/speech", json=LONG, timeout=60)
    assert r.status_code == 504 and "2.5 s" in r.json()["error"]["message"], r.text
    after_timeout = small_seconds(hurried)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{hurried.url}/v1/audio/speech", json=LONG, timeout=2.0)  # the client gives up first
    after_abandon = small_seconds(hurried)
    assert max(after_timeout, after_abandon) < alone + 2.0, (alone, after_timeout, after_abandon)


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_a_stream_cut_by_the_timeout_does_not_look_whole(hurried):
    """The status is sent already: the server closes the connection without the last chunk, which every HTTP
    client reports as an error (httpx: RemoteProtocolError), and counts the request as a 504."""
    body = {**LONG, "input": "A sentence to speak. " * 4, "max_frames": 600, "stream": True}
    got, timed_out = [], 'valle_requests_total{path="/v1/audio/speech",status="504"}'
    before = metric(hurried, timed_out)
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        with httpx.stream("POST", f"{hurried.url}/v1/audio/speech", json=body, timeout=60) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                got.append(chunk)
    assert len(b"".join(got)) < 44 + 4 * 600 * FRAME * 2
    assert metric(hurried, timed_out) == before + 1
    assert "stream cut after" in hurried.output()


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_full_queue_answers_429_and_sigterm_drains(tmp_path):
    s = Server(tmp_path, "--max-batch", "1", "--max-waiting", "0")
    try:
        long = {"model": "tts-1", "input": "This is a rather long sentence for the test. " * 3, "voice": "default",
                "response_format": "wav", "max_frames": 600, "seed": 1}  # 16 frames per token allow more than 600
        first: dict = {}

        def run():
            first["r"] = httpx.post(f"{s.url}/v1/audio/speech", json=long, timeout=120)

        t = threading.Thread(target=run)
        t.start()
        end = time.monotonic() + 30
        while httpx.get(f"{s.url}/health").json()["active"] == 0 and time.monotonic() < end:
            time.sleep(0.02)
        busy = httpx.post(f"{s.url}/v1/audio/speech", json={**long, "max_frames": 5}, timeout=30)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "2", busy.text
        assert busy.json()["error"]["type"] == "rate_limit_error"
        s.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while "draining" not in s.output() and time.monotonic() < end:
            time.sleep(0.02)
        late = httpx.post(f"{s.url}/v1/audio/speech", json={**long, "max_frames": 5}, timeout=30)
        assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
        t.join(120)
        assert first["r"].status_code == 200 and wav_frames(first["r"].content) == 3 * 600
        s.proc.wait(30)
        assert s.proc.returncode == 0 and "Traceback" not in s.output()
    finally:
        s.stop()


def test_the_limits_check_themselves_and_make_the_flags(capsys):
    from valle import commands
    from valle.cli import run_main
    from valle.commands import serve
    from valle.serve.limits import LimitError, Limits

    for bad, flag in (({"max_batch": 0}, "--max-batch 0"), ({"max_waiting": -1}, "--max-waiting -1"),
                      ({"request_timeout": float("nan")}, "--request-timeout nan"),
                      ({"max_frames": 1.5}, "--max-frames 1.5: need a whole"), ({"max_frames": 10**6}, "at most 9000"),
                      ({"max_body_mb": float("inf")}, "--max-body-mb inf")):
        with pytest.raises(LimitError, match=flag):
            Limits(**bad)
    assert Limits(max_waiting=0).max_body_bytes == 16 << 20
    limits = serve.check_args(serve.build_parser().parse_args(["--max-frames", "300", "--drain-timeout", "5"]))
    assert limits == Limits(max_frames=300, drain_timeout=5.0)
    with pytest.raises(SystemExit) as e:
        run_main(lambda: commands.main(["serve", "--max-batch", "0"]))
    assert e.value.code == 2 and capsys.readouterr().err == "error: --max-batch 0: must be positive and finite\n"


def test_the_voices_import_without_the_http_server():
    """valle.serve's library (voices, engine, service) needs neither uvicorn nor fastapi; only server/app do."""
    code = ("import sys; sys.modules['uvicorn'] = sys.modules['fastapi'] = sys.modules['starlette'] = None\n"
            "import valle.serve.voices, valle.serve.service\n"
            "print(valle.serve.voices.VOICE_NAME.pattern)")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "A-Za-z0-9" in out.stdout, out.stderr[-2000:]


def test_other_addresses_need_an_api_key(monkeypatch, capsys):
    from valle import commands

    monkeypatch.setattr(sys, "argv", ["valle", "serve", "--host", "0.0.0.0"])
    monkeypatch.delenv("VALLE_API_KEY", raising=False)
    with pytest.raises(SystemExit) as e:
        commands.entry()
    assert e.value.code == 2 and "needs --api-key" in capsys.readouterr().err


@pytest.mark.slow  # exports the tiny model and starts a server (~20 s on 2 cores)
def test_a_server_on_the_onnx_engine_speaks_and_refuses_a_bad_folder(tmp_path):
    """valle serve --engine onnxruntime --onnx DIR: an int8 export of the served checkpoint speaks through the API;
    without a folder, or with one exported from another model, it does not start, in one line."""
    pytest.importorskip("onnxruntime")
    from valle.onnx_engine.export import export

    model = tiny_model()
    export(model, tmp_path / "int8", precision="int8")
    s = Server(tmp_path, "--engine", "onnxruntime", "--onnx", str(tmp_path / "int8"), "--api-key", KEY)
    try:
        r = speak(s, voice="default", max_frames=30, top_k=1)
        assert r.status_code == 200, r.text
        assert 0 < wav_frames(r.content) <= 30
    finally:
        assert s.stop() == 0, s.output()[-3000:]
    with torch.no_grad():
        model.ar_predict_layer.weight[0, 0] += 1
    export(model, tmp_path / "other")
    base = [sys.executable, "-m", "valle", "serve", "--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4", "--device",
            "cpu", "--engine", "onnxruntime"]
    for extra, message in (([], "needs --onnx DIR"), (["--onnx", str(tmp_path / "other")], "exported from another")):
        run = subprocess.run(base + extra, capture_output=True, text=True, env=ENV, timeout=120)
        assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
