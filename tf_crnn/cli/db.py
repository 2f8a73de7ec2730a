"""``tf-crnn db uri|start|stop|status|import-run``: the database runs go to (the embedded SecantusDB unless configured).

``import-run FOLDER`` uploads a run's local record (``output_model_dir/sacred_runs/<run id>``, written
while MongoDB did not answer) into that database: :mod:`tf_crnn.tracking.run_import`.
"""
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


@handles("db import-run")
def _import_run(args: argparse.Namespace) -> int:
    from ..tracking.run_import import import_run, read_local_run, target_database
    from ..tracking.urls import redact_url

    local = read_local_run(args.folder)
    url, db_name = target_database(local, args.url, args.db)
    result = import_run(local, url, db_name)
    how = "created as" if result.created else "completed in"
    print(f"{local.folder}: {how} run {result.run_id} ({result.status}) of {redact_url(url)} database "
          f"'{db_name}': {result.metric_values} metric values and {len(result.artifacts)} artifacts added")
    return 0


def register(sub) -> None:
    """Add ``tf-crnn db`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("db", help="the MongoDB runs go to (embedded SecantusDB unless configured)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("uri", "print the URL in use"), ("start", "start the embedded server"),
                         ("stop", "stop the embedded server"), ("status", "is the embedded server running?")):
        actions.add_parser(action, help=text).set_defaults(func=_db)
    i = actions.add_parser(
        "import-run", help="upload a run's local record (OUTPUT/sacred_runs/N) into the database",
        description="Upload a run that MongoDB could not be given whole (its Sacred FileStorageObserver record in "
                    "output_model_dir/sacred_runs/<run id>) as one run with all its metrics and artifacts. The run "
                    "already in the database is completed (no value stored twice), else created; a run that is "
                    "complete there already is refused. The database is found as training finds it.")
    i.add_argument("folder", help="the run's record: output_model_dir/sacred_runs/<run id>")
    i.add_argument("--url", help="MongoDB URL (default: the run's mongo_url, else $TF_CRNN_MONGO_URL, "
                                 "else the embedded server)")
    i.add_argument("--db", help="database name (default: the run's mongo_db_name)")
    i.set_defaults(func=_import_run)
