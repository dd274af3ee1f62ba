"""The speech API's server: load the base and the voices once (`build_service`), then serve HTTP with uvicorn until
SIGTERM drains it (`serve`)."""

from __future__ import annotations

import threading
import time

import uvicorn

from valle.serve.limits import Limits
from valle.serve.service import Service


def build_service(checkpoint: str, nhead: int | None, voices: str | None, device: str, precision: str,
                  codec_weights: str, limits: Limits, engine: str = "torch", onnx: str | None = None) -> Service:
    """Load the base once (run by torch, or by ONNX Runtime from the folder `onnx`), read the voices, make the
    generation engine (not started)."""
    from valle.codec import Codec
    from valle.inference import load_for_inference
    from valle.serve.engine import Engine
    from valle.serve.metrics import Metrics
    from valle.serve.voices import VoiceBank

    speaking = load_for_inference(checkpoint, device=device, precision=precision, nhead=nhead, engine=engine,
                                  onnx=onnx)
    model, tokenizer = speaking.model, speaking.tokenizer
    codec = Codec.from_weights(codec_weights, device=speaking.device)
    bank = VoiceBank(voices, model, tokenizer, codec)
    metrics = Metrics()
    engine = Engine(model, bank, codec, metrics, limits)
    return Service(model, tokenizer, bank, engine, metrics, limits)


class DrainingServer(uvicorn.Server):
    """uvicorn's Server whose first SIGTERM/SIGINT drains (new requests get 503; those in flight finish, up to
    `drain_timeout` s) before it stops; a second signal stops at once. It exits normally (status 0)."""

    def __init__(self, config: uvicorn.Config, service: Service, drain_timeout: float):
        super().__init__(config)
        self.service, self.drain_timeout = service, drain_timeout

    def handle_exit(self, sig, frame) -> None:
        if self.service.draining:
            self.should_exit = self.force_exit = True
            return
        self.service.draining = True
        print(f"valle serve: draining {self.service.active} requests in flight", flush=True)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        end = time.monotonic() + self.drain_timeout
        while self.service.active and time.monotonic() < end:
            time.sleep(0.05)
        self.should_exit = True

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                print(f"valle serve: listening on http://{host}:{port}", flush=True)


def serve(service: Service, host: str, port: int, api_key: str | None) -> None:
    """Run the server until SIGTERM/SIGINT (drained) or a second signal."""
    from valle.serve.app import create_app

    config = uvicorn.Config(create_app(service, api_key), host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=5)
    service.engine.start()
    try:
        DrainingServer(config, service, service.limits.drain_timeout).run()
    finally:
        service.engine.stop()
    print("valle serve: stopped", flush=True)
