"""`valle app`: start the web app on this machine.

The page is served on 127.0.0.1:7860 by default; other machines can reach it only with --listen-all
(or --host ADDRESS), and then a warning says that anyone on the network can use it. No telemetry, no
share link, and the page's assets come from the installed gradio wheel (nothing is fetched at run time).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from valle.app.workspace import Workspace
from valle.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", default=".",
                   help="the folder the page may read and write; every path typed in the page is inside it [.]")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but localhost also needs --listen-all [127.0.0.1]")
    p.add_argument("--listen-all", action="store_true",
                   help="allow --host other than localhost (0.0.0.0: every network interface); prints a warning")
    p.add_argument("--port", type=int, default=7860, help="port [7860]")
    p.add_argument("--max-upload-mb", type=float, default=500.0,
                   help="largest file the page accepts, in MB; bigger corpora: copy them into the workspace [500]")
    p.add_argument("--device", default="auto", help="device for data preparation and synthesis: auto, cpu, cuda [auto]")
    return p


def check_host(host: str, listen_all: bool) -> str:
    """The address to bind; a non-local one only with --listen-all, and then with a warning."""
    if host in LOCAL_HOSTS:
        return host
    if not listen_all:
        raise UserError(f"--host {host}: the app listens on localhost only unless you also pass --listen-all "
                        "(then anyone who can reach this machine can use the page and its workspace)")
    print(f"WARNING: listening on {host}: anyone who can reach this machine on the network can use the page, "
          "start training and read and write the workspace. There is no login.", file=sys.stderr)
    return host


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    host = check_host(args.host, args.listen_all)
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb {args.max_upload_mb}: must be positive")
    workspace = Workspace(args.workspace, args.max_upload_mb)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        from valle.app.ui import App, build
    except ImportError as e:
        raise UserError(f"the web app needs gradio ({e}): pip install 'valle-toolkit[app]'") from None

    app = App(workspace, device=args.device)
    page = build(app)
    print(f"workspace: {app.ws.root}")
    page.queue().launch(server_name=host, server_port=args.port, share=False, inbrowser=False,
                        max_file_size=f"{int(args.max_upload_mb)}mb", show_error=False)
