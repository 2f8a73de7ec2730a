"""What MongoDB refuses mid-run does not cost the rest of the run.

Sacred drops an observer for good at its first exception; only database outages (``PyMongoError``) used to be
caught. Here the real SecantusDB server and pymongo raise the real errors: an int BSON cannot encode
(``OverflowError``) in a metric and in the run's info, a run document past 16 MB (``DocumentTooLarge``, from its
captured output), and a local copy that cannot be written (its folder lies under a regular file).
"""
from __future__ import annotations

import json
from pathlib import Path

import pymongo
import pytest
from sacred import Experiment
from sacred.metrics_logger import linearize_metrics

from tf_crnn.tracking.observer import CAPTURED_OUT_KEPT, mongo_observer

HUGE = 2 ** 70  # past BSON's 64-bit ints
LOUD = "0123456789abcdef" * 1_100_000  # 17.6 MB of captured output: the run document would pass 16 MB


def _run_with_refused_values(mongo_url: str, db: str, fallback_dir: Path, huge: bool = True):
    observer = mongo_observer(mongo_url, db, fallback_dir=str(fallback_dir), final_wait_s=2.0)
    ex = Experiment("refusals", save_git_info=False)
    ex.observers.append(observer)
    if huge:
        ex.add_config({"big_setting": HUGE})  # refused at the start: the config

    @ex.main
    def main(_run):
        _run.log_scalar("loss", 1.0, 1)
        if huge:
            _run.info["huge"] = HUGE
            _run.log_scalar("big", HUGE, 1)
        # as tf-crnn pushes an epoch's metrics (tf_crnn.experiment.epoch_callbacks.write_metrics_now)
        observer.log_metrics(linearize_metrics(_run._metrics.get_last_metrics()), _run.info)
        print(LOUD)
        _run.log_scalar("loss", 0.5, 2)
        return 3

    run = ex.run(options={"--capture": "sys"})  # pytest owns the file descriptors
    return run, observer


def test_refused_values_are_stored_as_text_the_output_trimmed_and_the_whole_run_kept_locally(
        mongo_url, tmp_path, capsys):
    run, observer = _run_with_refused_values(mongo_url, "tf_crnn_refusals", tmp_path / "fallback")
    err = capsys.readouterr().err
    assert run.status == "COMPLETED" and observer not in run._failed_observers
    assert not observer.incomplete

    db = pymongo.MongoClient(mongo_url)["tf_crnn_refusals"]
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["result"] == 3
    assert doc["info"]["huge"] == str(HUGE) and doc["config"]["big_setting"] == str(HUGE)
    series = {m["name"]: m["values"] for m in db.metrics.find({"run_id": run._id})}
    assert series == {"loss": [1.0, 0.5], "big": [str(HUGE)]}  # every value, the refused one as text
    out = doc["captured_out"]
    assert out.startswith("[tf-crnn: the first ") and f"are only in {observer.local_record}/cout.txt]" in out
    assert len(out) < CAPTURED_OUT_KEPT + 500 and out.rstrip().endswith(LOUD[-1000:])

    # The whole record is in the local copy, said once per kind of refusal, naming it.
    local = Path(observer.local_record)
    assert LOUD in (local / "cout.txt").read_text(encoding="utf-8")
    assert json.loads((local / "run.json").read_text())["status"] == "COMPLETED"
    print(err)
    refusals = [line for line in err.splitlines() if " refused " in line]
    assert len(refusals) == 1  # once per kind, however many writes it hit (the info, the metric, the run)
    assert f"refused the config of run {run._id} " in refusals[0]
    assert "(OverflowError: MongoDB can only handle" in refusals[0]
    assert f"the whole record is in {local}" in err


def test_refused_values_with_an_unwritable_local_copy_still_complete_the_run(mongo_url, tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the local copy's folder would go")
    run, observer = _run_with_refused_values(mongo_url, "tf_crnn_refusals_nofallback", blocker / "fallback",
                                             huge=False)
    err = capsys.readouterr().err
    assert run.status == "COMPLETED" and observer not in run._failed_observers
    assert observer.local_record is None
    assert "cannot write the local copy" in err and "Not a directory" in err
    refusals = [line for line in err.splitlines() if " refused " in line]
    assert len(refusals) == 1 and "refused the run document of run" in refusals[0]
    assert "(DocumentTooLarge: " in refusals[0] and "the whole record is in nowhere" in refusals[0]
    db = pymongo.MongoClient(mongo_url)["tf_crnn_refusals_nofallback"]
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["result"] == 3
    assert "are only in the run's console]" in doc["captured_out"]
    assert {m["name"]: m["values"] for m in db.metrics.find({"run_id": run._id})}["loss"] == [1.0, 0.5]


@pytest.mark.parametrize("value, expected", [
    (HUGE, str(HUGE)), (-HUGE, str(-HUGE)), (2 ** 63 - 1, 2 ** 63 - 1), (True, True), (1.5, 1.5),
    ({1: [HUGE, "a"]}, {"1": [str(HUGE), "a"]}), ((1, HUGE), [1, str(HUGE)]),
])
def test_storable_turns_only_what_bson_cannot_encode_into_text(value, expected):
    from tf_crnn.tracking.observer import storable

    assert storable(value) == expected


def test_import_run_stores_a_local_copy_with_refused_values_the_observers_way(mongo_url, tmp_path, capsys):
    from tf_crnn.tracking.run_import import import_run, read_local_run

    run, observer = _run_with_refused_values(mongo_url, "tf_crnn_refusals_src", tmp_path / "fallback")
    capsys.readouterr()
    result = import_run(read_local_run(observer.local_record), mongo_url, "tf_crnn_refusals_imported")
    db = pymongo.MongoClient(mongo_url)["tf_crnn_refusals_imported"]
    doc = db.runs.find_one({"_id": result.run_id})
    assert result.created and doc["status"] == "COMPLETED" and doc["result"] == 3
    assert doc["config"]["big_setting"] == str(HUGE) and doc["info"]["huge"] == str(HUGE)
    assert doc["captured_out"].startswith("[tf-crnn: the first ")
    assert f"are only in {Path(observer.local_record).resolve() / 'cout.txt'}]" in doc["captured_out"]
    series = {m["name"]: m["values"] for m in db.metrics.find({"run_id": result.run_id})}
    assert series == {"loss": [1.0, 0.5], "big": [str(HUGE)]}
