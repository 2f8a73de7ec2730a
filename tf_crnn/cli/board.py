"""``tf-crnn board``: Omniboard in the foreground on the database training uses, until Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse

from .. import interrupts
from .errors import handles


def serve(url: str | None = None, db: str | None = None, port: int | None = None, verbose: bool = False,
          host: str | None = None) -> int:
    """Run Omniboard until Ctrl-C (or SIGTERM); return an exit code.

    ``host`` None serves this machine only (127.0.0.1); any other address opens Omniboard to the network, with
    the basic authentication of ``TF_CRNN_BOARD_USER`` / ``TF_CRNN_BOARD_PASSWORD`` (required then).

    Raises:
        tf_crnn.tracking.urls.TrackingError: the database cannot be reached.
        tf_crnn.tracking.board.BoardError: Omniboard cannot be installed or started.
    """
    from ..tracking.board import DEFAULT_PORT, ENV_PASSWORD, LOCAL_HOST, Board, credentials, is_loopback
    from ..tracking.server import resolve_url
    from ..tracking.urls import DEFAULT_DB_NAME

    host = host or LOCAL_HOST
    auth = credentials(host)  # before the database is resolved: refused without a password on a network address
    url = resolve_url(url)
    board = Board(url, db or DEFAULT_DB_NAME, DEFAULT_PORT if port is None else port,
                  on_output=(lambda line: print(f"  omniboard: {line}", flush=True)) if verbose else None, host=host)
    if is_loopback(host):
        reach = f"only from this machine ({host}){', with a password' if auth else ''}"
    else:
        reach = (f"from the network on {host}, with basic authentication (user '{auth[0]}', password from "
                 f"${ENV_PASSWORD})")

    try:
        with interrupts.stop_on_signals():  # SIGTERM too, and SIGINT in a background job
            address = board.start()
            print(f"Omniboard: {address}\n  {board.describe()}\n  (reachable {reach}; Ctrl-C stops it)", flush=True)
            if not is_loopback(host):
                print(f"  warning: anyone who can reach {host}:{board.port} and has the password sees every run, its "
                      f"output and artifacts, and can delete runs", flush=True)
            for note in board.notes:
                print(f"  note: {note}", flush=True)
            code = board.wait()
        print(f"Omniboard exited with code {code}; its last output:\n" + "\n".join(list(board.output)[-10:]))
        return code or 1
    except KeyboardInterrupt:
        board.stop()
        print("Omniboard stopped")
        return 0
    finally:
        board.stop()


@handles("board")
def _board(args: argparse.Namespace) -> int:
    return serve(args.url, args.db, args.port, args.verbose, args.host)


def register(sub) -> None:
    """Add ``tf-crnn board`` to the ``tf-crnn`` subparsers ``sub``."""
    from ..tracking.board import DEFAULT_PORT
    from ..tracking.urls import DEFAULT_DB_NAME

    p = sub.add_parser("board", help="browse the runs with Omniboard (installed with npm on first use)",
                       description="Start Omniboard on the database runs go to and print its address; "
                                   "Ctrl-C stops it. Omniboard is installed with npm into "
                                   "$TF_CRNN_HOME/omniboard (~/.tf_crnn/omniboard) on first use.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"first port to try; the next free one is taken when it is busy (default {DEFAULT_PORT})")
    p.add_argument("--url", help="MongoDB URL (default: as training: $TF_CRNN_MONGO_URL, else the embedded server)")
    p.add_argument("--db", default=DEFAULT_DB_NAME,
                   help=f"database name, mongo_db_name of the runs (default {DEFAULT_DB_NAME})")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only); another address, "
                                  "e.g. 0.0.0.0 for every interface, opens the board to the network and requires "
                                  "basic authentication: TF_CRNN_BOARD_PASSWORD (and TF_CRNN_BOARD_USER, default "
                                  "admin) in the environment")
    p.add_argument("--verbose", action="store_true", help="echo Omniboard's own log (one line per request)")
    p.set_defaults(func=_board)
