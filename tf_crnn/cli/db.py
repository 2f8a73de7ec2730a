"""``tf-crnn db uri|start|stop|status``: the database runs go to (the embedded SecantusDB unless configured)."""
from __future__ import annotations

import argparse
import os

from .errors import handles


@handles("db")
def _db(args: argparse.Namespace) -> int:
    from ..tracking.server import EmbeddedServer
    from ..tracking.urls import ENV_URL, redact_url

    server = EmbeddedServer.default()
    if args.action == "uri":
        configured = os.environ.get(ENV_URL)
        url = redact_url(configured) if configured else server.url()
        print(url or "none: the embedded server is not running (`tf-crnn db start`; any training starts it)")
        return 0 if url else 1
    if args.action == "start":
        print(server.start())
        return 0
    if args.action == "stop":
        print("stopped" if server.stop() else "not running")
        return 0
    url = server.url()
    print(f"running at {url}, data in {server.data_dir}" if url else f"not running (data in {server.data_dir})")
    return 0 if url else 1


def register(sub) -> None:
    """Add ``tf-crnn db`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("db", help="the MongoDB runs go to (embedded SecantusDB unless configured)")
    p.add_argument("action", choices=["uri", "start", "stop", "status"])
    p.set_defaults(func=_db)
