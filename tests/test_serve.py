"""The speech API (valle-serve): batched equals solo, adapter voices on one base, the official openai client,
streaming, bad input, a client gone mid-stream, 429, SIGTERM draining. Servers run on 127.0.0.1 with a free port,
started and stopped by the tests; every wait is bounded."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
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


def engine_for(model, bank, max_batch=8):
    from valle.serve.engine import Engine
    from valle.serve.metrics import Metrics

    class CodesOnly:  # the waveform is the codec's business; codes are compared here
        def decode(self, codes):
            return torch.zeros(len(codes) * FRAME)

    return Engine(model, bank, CodesOnly(), Metrics(), max_batch=max_batch)


def requests(tokenizer, prompt):
    texts = ["Hello there.", "How are you today, my friend?", "One.", "This is a test of batching.", "Good night."]
    out = []
    for i, text in enumerate(texts):
        tok = tokenizer.encode(text, "en")
        out.append(Request(list(tok.ids), list(tok.languages), prompt if i % 2 == 0 else None))
    return out


@pytest.mark.parametrize("sampling", [Sampling(top_k=1), Sampling(top_k=20, temperature=0.9),
                                      Sampling(top_k=20, min_frames=35)], ids=["greedy", "top20", "min-frames"])
def test_batched_requests_equal_solo_generation(single_thread, sampling):
    """Jobs joining a running batch at different steps give the codes of generating each alone with its seed."""
    from valle.serve.engine import Job
    from valle.serve.voices import VoiceBank
    from valle.text import get_tokenizer

    def frames(i: int) -> int:
        return 40 if i < 3 else 40 + 7 * i

    model, tokenizer = tiny_model(), get_tokenizer("vallex")
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


def test_voice_names_are_names(tmp_path):
    from valle.errors import UserError
    from valle.serve.voices import BadVoiceName, VoiceBank

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


# ---- a real server


class Server:
    """bin/serve.py in a subprocess on 127.0.0.1, a free port."""

    def __init__(self, tmp: Path, *args: str):
        self.log = open(tmp / "server.log", "w+")
        cmd = [sys.executable, str(REPO / "bin" / "serve.py"), "--checkpoint", str(TINY / "tiny.pt"), "--nhead", "4",
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
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
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
    for fmt in ("mp3", "flac", "opus"):
        data = c.audio.speech.create(model="tts-1", voice="plain", input="Hi.", response_format=fmt,
                                     extra_body={"max_frames": 10}).content
        assert len(data) > 100, fmt


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


@pytest.mark.slow  # starts a server (~15 s on 2 cores)
def test_a_client_gone_mid_stream_frees_its_row(server):
    body = {"model": "tts-1", "input": "One long sentence. " * 20, "voice": "alice", "response_format": "pcm",
            "stream": True, "max_frames": 1500}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        next(r.iter_bytes())  # the first sentence arrived; the rest is being made
    end = time.monotonic() + 30
    while time.monotonic() < end:
        health = httpx.get(f"{server.url}/health").json()
        if health["active"] == 0 and health["running"] == 0 and health["queued"] == 0:
            break
        time.sleep(0.1)
    assert health["active"] == health["running"] == health["queued"] == 0, health


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


def test_other_addresses_need_an_api_key(monkeypatch, capsys):
    from valle.commands import serve

    with pytest.raises(SystemExit) as e:
        monkeypatch.setattr(sys, "argv", ["valle-serve", "--host", "0.0.0.0"])
        monkeypatch.delenv("VALLE_API_KEY", raising=False)
        serve.run_main(lambda: serve.main(["--host", "0.0.0.0"]))
    assert e.value.code == 2 and "needs --api-key" in capsys.readouterr().err
