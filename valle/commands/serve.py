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

from valle.cli import ArgumentParser, UserError, add_model_arguments
from valle.config import add_config_arguments, given_arguments
from valle.serve.limits import Limits


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
    add_config_arguments(p, Limits)
    return p


def check_args(a: argparse.Namespace) -> Limits:
    if not is_loopback(a.host) and not a.api_key:
        raise UserError(f"--host {a.host}: listening beyond this machine needs --api-key KEY (or $VALLE_API_KEY)")
    if not 0 <= a.port <= 65535:
        raise UserError(f"--port {a.port}: must be between 0 and 65535")
    return Limits(**given_arguments(a, Limits))


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

    from valle.serve.server import build_service, serve

    service = build_service(a.checkpoint, a.nhead, a.voices, a.device, a.precision, a.codec_weights, limits,
                            engine=a.engine, onnx=a.onnx)
    serve(service, a.host, a.port, a.api_key)
