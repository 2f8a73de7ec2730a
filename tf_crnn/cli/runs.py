"""``tf-crnn runs list|show|compare|download|rerun|delete``: the runs of the database training uses.

The database is found as training finds it (``--url``, else ``$TF_CRNN_MONGO_URL``,
else the embedded server); ``--db`` is ``mongo_db_name``. Tables are plain text;
``--json`` prints JSON for scripts. The library is :mod:`tf_crnn.tracking.runs`.
``tf-crnn runs export``, the name of ``download`` before 0.5, still works and says so on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .._util import parse_run_id
from .errors import handles, renamed


def _database(args):
    from ..tracking.runs import Database
    from ..tracking.server import resolve_url

    args.resolved_url = resolve_url(args.url, db_name=args.db)
    return Database.connect(args.resolved_url, args.db)



def _print_json(value) -> None:
    print(json.dumps(value, indent=1, default=str, ensure_ascii=False))


def _table(frame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}") if len(frame) else "(none)"


@handles("runs list")
def _list(args: argparse.Namespace) -> int:
    from ..config import parse_assignments
    from ..tracking import runs

    where = parse_assignments(args.where or [], "--where")
    database = _database(args)
    try:
        if args.sweep:
            from ..experiment.sweep import sweep_runs

            frame = sweep_runs(database, args.sweep)
        else:
            frame = runs.list_runs(database, args.status, args.experiment, where, args.sort, args.limit)
    finally:
        database.close()
    if args.json:
        _print_json(frame.to_dict(orient="records"))
    else:
        print(_table(frame))
    return 0


@handles("runs show")
def _show(args: argparse.Namespace) -> int:
    from ..tracking import runs

    database = _database(args)
    try:
        shown = runs.show_run(database, parse_run_id(args.id))
    finally:
        database.close()
    if args.json:
        _print_json({**shown, "metrics": json.loads(shown["metrics"].to_json()),
                     "artifacts": shown["artifacts"].drop(columns="file_id").to_dict(orient="records")})
        return 0
    print(f"run {shown['id']} ({shown['experiment']}): {shown['status']}, started {shown['start']}, "
          f"stopped {shown['stop']}, host {shown['host'].get('hostname')}")
    print("\nconfig:\n" + "\n".join(f"  {k} = {v!r}" for k, v in sorted(shown["config"].items())))
    print("\nmetrics per epoch:\n" + (shown["metrics"].to_string(float_format=lambda v: f"{v:.4f}")
                                      if len(shown["metrics"]) else "(none)"))
    print("\nartifacts:\n" + _table(shown["artifacts"].drop(columns="file_id")))
    print(f"\nresult: {shown['result']}")
    print("code: " + ("; ".join(f"{r.get('url')} {r.get('commit')}{' (dirty)' if r.get('dirty') else ''}"
                                for r in shown["repositories"]) or "no git information")
          + f"; {len(shown['sources'])} source files")
    print("dependencies: " + ", ".join(shown["dependencies"]))
    return 0


@handles("runs compare")
def _compare(args: argparse.Namespace) -> int:
    from .. import reports
    from ..tracking import runs

    database = _database(args)
    try:
        config, metrics, histories = runs.compare_runs(database, [parse_run_id(i) for i in args.ids])
    finally:
        database.close()
    if args.json:
        _print_json({"config": config.to_dict(), "metrics": metrics.to_dict()})
    else:
        print("config keys that differ:\n" + (config.to_string() if len(config) else "(none)"))
        print("\nmetrics:\n" + metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.plot:
        print(f"\nlearning curves: {reports.compare_curves(histories, args.plot)}", file=sys.stderr)
    return 0


@handles("runs download")
def _download(args: argparse.Namespace) -> int:
    from ..tracking import runs

    database = _database(args)
    try:
        written = runs.download_run(database, parse_run_id(args.id), args.out_dir)
    finally:
        database.close()
    print("\n".join(written))
    if os.path.isdir(os.path.join(args.out_dir, "export")):
        print(f"predict with: tf-crnn predict --model {os.path.join(args.out_dir, 'export')} IMAGE...")
    return 0


@handles("runs delete")
def _delete(args: argparse.Namespace) -> int:
    from ..tracking import runs

    ids = [parse_run_id(i) for i in args.ids]
    database = _database(args)
    try:
        for run_id in ids:
            database.run(run_id)  # all exist, or nothing is asked or deleted
        if not args.yes:
            if not sys.stdin.isatty():
                raise ValueError("deleting runs needs a confirmation: run it in a terminal, or add --yes")
            answer = input(f"delete run(s) {', '.join(map(str, ids))} from database '{args.db}' with their "
                           f"metrics and artifacts? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        counts = runs.delete_runs(database, ids)
    finally:
        database.close()
    print(f"deleted {counts['runs']} run(s), {counts['metrics']} metric series, {counts['files']} GridFS file(s)")
    return 0


@handles("runs rerun")
def _rerun(args: argparse.Namespace) -> int:
    from ..experiment.experiments import environment_of, ex
    from ..tracking import runs

    database = _database(args)
    try:
        old = database.run(parse_run_id(args.id))
        config = runs.rerun_config(old, args.resolved_url, args.db, args.output_model_dir)
        problems = runs.rerun_problems(old, config, environment_of(runs.rerun_params(config)))
        if problems and not args.force:
            raise runs.RunsError(f"run {old['_id']} cannot be repeated as recorded:\n  " + "\n  ".join(problems)
                                 + "\nRestore what the record names (environment, code, data), or re-run anyway "
                                   "with --force: the numbers may differ from the record's")
        for line in problems:
            print(f"tf-crnn runs rerun: --force: {line}", file=sys.stderr)
        run = ex.run(config_updates=config, info={"rerun_of": old["_id"], "rerun_differences": problems})
        new = database.run(run._id)
        table = runs.compare_results(old, new)
        database.db.runs.update_one({"_id": run._id}, {"$set": {"info.rerun_comparison": {
            name: {"recorded": row.iloc[0], "rerun": row.iloc[1]} for name, row in table.iterrows()}}})
    finally:
        database.close()
    print(f"\nrun {run._id} repeats run {old['_id']}:\n" + table.to_string(float_format=lambda v: f"{v:.6f}"))
    return 0


def register(sub) -> None:
    """Add ``tf-crnn runs`` and its actions to the ``tf-crnn`` subparsers ``sub``."""
    from ..tracking.urls import DEFAULT_DB_NAME

    p = sub.add_parser("runs", help="list, show, compare, download and delete the recorded runs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="runs_command", required=True)

    def action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        q = actions.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--url", help="MongoDB URL (default: as training: $TF_CRNN_MONGO_URL, else the embedded server)")
        q.add_argument("--db", default=DEFAULT_DB_NAME, help=f"database name (default {DEFAULT_DB_NAME})")
        q.set_defaults(func=handler)
        return q

    q = action("list", _list, "one line per run, newest first")
    q.add_argument("--status", help="only runs with this status (COMPLETED, FAILED, INTERRUPTED, RUNNING, "
                                    "PROBABLY_DEAD: running without a heartbeat for 2 minutes)")
    q.add_argument("--experiment", help="only runs of this experiment (crnn, crnn-evaluate)")
    q.add_argument("--where", action="append", metavar="KEY=VALUE", help="only runs whose config has KEY=VALUE")
    q.add_argument("--sort", help="column to sort by (best_cer and last_cer ascending, others descending)")
    q.add_argument("--limit", type=int, default=20, help="rows at most (default 20; 0 for all)")
    q.add_argument("--sweep", metavar="NAME", help="only the trials of sweep NAME, ranked by best eval CER "
                                                   "(tf-crnn sweep); the other filters do not apply")
    q.add_argument("--json", action="store_true", help="JSON instead of a table")
    q = action("show", _show, "config, metrics per epoch, artifacts, code and dependencies of one run")
    q.add_argument("id")
    q.add_argument("--json", action="store_true")
    q = action("compare", _compare, "config keys that differ and metrics side by side")
    q.add_argument("ids", nargs="+", metavar="ID")
    q.add_argument("--plot", metavar="PNG", help="also draw their learning curves into this PNG")
    q.add_argument("--json", action="store_true")
    download_help = "download a run's artifacts; export.zip is unpacked to OUT_DIR/export"
    for name, handler in (("download", _download),
                          ("export", renamed("tf-crnn runs export", "tf-crnn runs download", _download))):
        q = action(name, handler, download_help if name == "download" else "old name of download (deprecated)")
        q.add_argument("id")
        q.add_argument("out_dir")
    q = action("rerun", _rerun, "train again from a run's record: same config and seed, after checking that "
                                "the run was deterministic and that the environment, the code version and every "
                                "data file still match")
    q.add_argument("id")
    q.add_argument("--output-model-dir", help="where the new training writes (default: <recorded>_rerun_of_<id>)")
    q.add_argument("--force", action="store_true", help="re-run even if the run was not deterministic or the "
                                                          "environment, code or data differ from the record")
    q = action("delete", _delete, "delete runs with their metrics and artifacts (asks first)")
    q.add_argument("ids", nargs="+", metavar="ID")
    q.add_argument("--yes", action="store_true", help="do not ask")
