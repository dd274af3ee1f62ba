"""Serve fine-tuned voices over HTTP: an OpenAI-compatible speech API (POST /v1/audio/speech), with streaming,
batching of concurrent requests and many voices (LoRA adapters) on one base model. See docs/serving.md.

It listens on 127.0.0.1 unless told otherwise; any other address needs --api-key (clients send
"Authorization: Bearer KEY"). SIGTERM (or Ctrl-C) drains: requests in flight finish, new ones get 503.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os

from valle.cli import ArgumentParser, UserError, add_model_arguments, run_main
from valle.serve.service import Limits

_LIMITS = Limits()


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m = add_model_arguments(p, "the base checkpoint every voice shares, or 'vallex' for the released one [vallex]")
    m.add_argument("--voices", default=None,
                   help="folder of voice files (NAME.json, see docs/serving.md); new voices are saved there "
                        "[none: only the voice 'default']")
    m.add_argument("--codec-weights", default="pretrained",
                   help="Encodec 24 kHz weights: pretrained, random (tests only: noise) or a file [pretrained]")
    n = p.add_argument_group("network")
    n.add_argument("--host", default="127.0.0.1", help="address to listen on; not loopback needs --api-key [127.0.0.1]")
    n.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (printed) [8000]")
    n.add_argument("--api-key", default=os.environ.get("VALLE_API_KEY"),
                   help="key clients must send as 'Authorization: Bearer KEY' (default: $VALLE_API_KEY) [none]")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-batch", type=int, default=_LIMITS.max_batch,
                     help=f"sentences generated together [{_LIMITS.max_batch}]")
    lim.add_argument("--max-waiting", type=int, default=_LIMITS.max_waiting,
                     help=f"requests waiting beyond --max-batch; more get 429 with Retry-After [{_LIMITS.max_waiting}]")
    lim.add_argument("--max-input-chars", type=int, default=_LIMITS.max_input_chars,
                     help=f"characters of input per request [{_LIMITS.max_input_chars}]")
    lim.add_argument("--max-frames", type=int, default=_LIMITS.max_frames,
                     help=f"frames per sentence, 75 per second [{_LIMITS.max_frames}]")
    lim.add_argument("--max-body-mb", type=float, default=_LIMITS.max_body_bytes / 2**20,
                     help=f"request body size in MiB [{_LIMITS.max_body_bytes / 2**20:g}]")
    lim.add_argument("--request-timeout", type=float, default=_LIMITS.request_timeout,
                     help=f"seconds from a request's arrival to its last byte [{_LIMITS.request_timeout:g}]")
    lim.add_argument("--drain-timeout", type=float, default=60.0,
                     help="after SIGTERM, seconds to let requests in flight finish [60]")
    return p


def check_args(a: argparse.Namespace) -> Limits:
    if not is_loopback(a.host) and not a.api_key:
        raise UserError(f"--host {a.host}: listening beyond this machine needs --api-key KEY (or $VALLE_API_KEY)")
    if not 0 <= a.port <= 65535:
        raise UserError(f"--port {a.port}: must be between 0 and 65535")
    values = {"--max-batch": a.max_batch, "--max-waiting": a.max_waiting, "--max-input-chars": a.max_input_chars,
              "--max-frames": a.max_frames, "--max-body-mb": a.max_body_mb, "--request-timeout": a.request_timeout,
              "--drain-timeout": a.drain_timeout}
    for flag, value in values.items():
        if not value > 0 and not (flag == "--max-waiting" and value == 0):
            raise UserError(f"{flag} {value}: must be positive")
    return Limits(max_batch=a.max_batch, max_waiting=a.max_waiting, max_input_chars=a.max_input_chars,
                  max_frames=a.max_frames, max_body_bytes=int(a.max_body_mb * 2**20),
                  request_timeout=a.request_timeout)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    limits = check_args(a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from valle.serve import build_service, serve

    service = build_service(a.checkpoint, a.nhead, a.voices, a.device, a.precision, a.codec_weights, limits)
    serve(service, a.host, a.port, a.api_key, a.drain_timeout)


def entry() -> None:
    """The console script and bin/ wrapper: errors as one line, exit code 2."""
    run_main(main)


if __name__ == "__main__":
    entry()
