"""A run's record says what made it, and `tf-crnn runs rerun` repeats it exactly (real tiny trainings, real server)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pymongo
import pytest
from conftest import tf_crnn, tiny_params

from tf_crnn.cli import main as cli_main
from tf_crnn.tracking import provenance, runs

DB_NAME = "tf_crnn_repro"
#: Metrics that measure the machine, not the training: left out of the comparison of a re-run.
TIMING_METRICS = ("train.images_per_second",)


def test_git_state_of_a_repository_made_by_the_test(tmp_path):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    assert provenance.git_state(tmp_path) is None  # not a checkout
    git("init", "-q", "-b", "main")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "first")
    state = provenance.git_state(tmp_path)
    assert state == {"commit": git("rev-parse", "HEAD"), "branch": "main", "dirty": False, "diff": ""}
    (tmp_path / "a.py").write_text("x = 2\n")
    (tmp_path / "untracked.txt").write_text("outputs do not make a checkout dirty\n")
    state = provenance.git_state(tmp_path)
    assert state["dirty"] and "+x = 2" in state["diff"] and "untracked" not in state["diff"]


def test_data_fingerprint_follows_content_or_stat(tmp_path):
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(bytes([i]) * 100)
    content = provenance.data_fingerprint(map(str, files), "content")
    assert content == provenance.data_fingerprint(map(str, reversed(files)), "content")  # order does not matter
    stat = provenance.data_fingerprint(map(str, files), "stat")
    files[0].write_bytes(bytes([9]) * 100)  # same size, other bytes
    assert provenance.data_fingerprint(map(str, files), "content") != content
    assert provenance.data_fingerprint(map(str, files), "stat") != stat  # its mtime moved
    assert provenance.data_fingerprint(map(str, files), "off") is None


def _train(digits_data, mongo_url, out, **overrides):
    from tf_crnn.experiment.experiments import ex

    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=2, deterministic=True)
    run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": DB_NAME, **overrides},
                 options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    return pymongo.MongoClient(mongo_url)[DB_NAME].runs.find_one({"_id": run._id})


def saved_tensors(prefix: Path) -> dict[str, bytes]:
    """Every tensor of a TensorFlow checkpoint (a SavedModel's ``variables/variables`` or a training's
    ``ckpt-N``) as raw bytes, by key; the object graph (a description, not a tensor) left out."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {key: np.asarray(reader.get_tensor(key)).tobytes() for key in reader.get_variable_to_shape_map()
            if key != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def epoch_metrics(db, run_id) -> dict[str, list[tuple[int, float]]]:
    return {m["name"]: list(zip(m["steps"], m["values"])) for m in db.metrics.find({"run_id": run_id})
            if m["name"] not in TIMING_METRICS}


@pytest.mark.slow
def test_run_record_holds_code_data_environment_and_rerun_repeats_it(digits_data, mongo_url, tmp_path, capsys):
    import tensorflow as tf

    data = tmp_path / "copy"
    shutil.copytree(digits_data / "data", data / "data")
    doc = _train(data, mongo_url, tmp_path / "out", seed=7)
    # Op determinism is process-wide: it is off again for whatever trains next in this process.
    from tf_crnn.trainer import op_determinism_enabled

    assert op_determinism_enabled() is False

    # The code: every module of the package, and the commit when the package is in a checkout.
    sources = {name.rsplit("/", 1)[-1] for name, _ in doc["experiment"]["sources"]}
    assert {"data.py", "model.py", "trainer.py", "decoding.py", "experiments.py"} <= sources
    assert len(doc["experiment"]["sources"]) == len(provenance.package_sources())
    checkout = provenance.git_state()
    if checkout is not None:
        assert doc["info"]["code"]["commit"] == checkout["commit"] and doc["experiment"]["repositories"]
    # The data: CSVs and alphabet as resources with their MD5, rows and image fingerprints.
    csv = str(data / "data" / "train" / "labels.csv")
    assert [csv, provenance.file_md5(csv)] in [list(r) for r in doc["resources"]]
    assert doc["info"]["data"]["train"]["rows"] == 64 and doc["info"]["data"]["eval"]["rows"] == 16
    assert len(doc["info"]["data"]["train"]["images_fingerprint"]) == 64  # sha256 hex (content, the default)
    # The environment (with what decides the dtype policy) and the seed.
    from tf_crnn.trainer import cpu_has_bfloat16, mixed_precision_policy

    environment = doc["info"]["environment"]
    assert environment["tensorflow"] == tf.__version__ and environment["cpu_bfloat16"] == cpu_has_bfloat16()
    assert environment["dtype_policy"] == doc["info"]["dtype_policy"] == (
        mixed_precision_policy(runs.rerun_params(doc["config"])) or "float32")
    assert "environment.txt" in {a["name"] for a in doc["artifacts"]} and doc["config"]["seed"] == 7

    # Re-run in a fresh process, as a user runs it: same config and seed, deterministic -> the same numbers and
    # the same weights, bit for bit.
    force = ["--force"] if checkout is not None and checkout["dirty"] else []  # a developer's uncommitted work
    args = ["runs", "rerun", str(doc["_id"]), "--url", mongo_url, "--db", DB_NAME, *force]
    result = tf_crnn(*args, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    db = pymongo.MongoClient(mongo_url)[DB_NAME]
    again = db.runs.find_one({"info.rerun_of": doc["_id"]})
    assert again["status"] == "COMPLETED" and again["config"]["seed"] == 7
    assert not [line for line in again["info"]["rerun_differences"] if not line.startswith("code:")]
    assert again["result"] == doc["result"]  # bit-identical eval metrics
    assert again["info"]["rerun_comparison"]["loss"]["recorded"] == doc["result"]["loss"]
    assert f"run {again['_id']} repeats run {doc['_id']}" in result.stdout
    recorded_metrics = epoch_metrics(db, doc["_id"])
    assert len(recorded_metrics["eval.cer"]) == 2 and epoch_metrics(db, again["_id"]) == recorded_metrics
    first, second = tmp_path / "out", Path(again["config"]["output_model_dir"])
    assert second == tmp_path / f"out_rerun_of_{doc['_id']}"
    exported, repeated = (saved_tensors(run / "export" / "variables" / "variables") for run in (first, second))
    # variables/N: the export's variable list, named in its model.json. _all_variables/N: the same tensors again,
    # as Keras' ExportArchive found them in its endpoints, in an order that changes from process to process.
    listed = [key for key in exported if key.startswith("variables/")]
    assert len(listed) >= 15 and {k: repeated[k] for k in listed} == {k: exported[k] for k in listed}
    assert sorted(repeated.values()) == sorted(exported.values()) and repeated.keys() == exported.keys()
    # The last checkpoint too: weights, batch-norm statistics, optimizer state and step counter.
    checkpoint = tf.train.latest_checkpoint(str(first / "checkpoints"))
    assert saved_tensors(Path(checkpoint)) == saved_tensors(second / "checkpoints" / Path(checkpoint).name)
    # Another seed gives other numbers.
    other = _train(data, mongo_url, tmp_path / "other", seed=8)
    assert other["result"]["loss"] != doc["result"]["loss"]

    # One CSV row edited: the re-run is refused, naming the file and both hashes.
    with open(csv, "a", encoding="utf-8") as f:
        f.write("images/000000.png;|1|\n")
    problems = runs.rerun_problems(doc, runs.rerun_config(doc, mongo_url, DB_NAME))
    assert any(line.startswith(f"train CSV {csv}: recorded ") for line in problems)
    assert "train rows: recorded 64, now 65" in problems
    capsys.readouterr()
    assert cli_main(args[:-1] if force else args) == 2
    err = capsys.readouterr().err
    assert "cannot be repeated as recorded" in err and csv in err and "--force" in err


@pytest.mark.slow
def test_rerun_refuses_a_run_that_was_not_deterministic_and_names_environment_differences(
        digits_data, mongo_url, tmp_path, capsys):
    """A training without deterministic=True gives other numbers each time, and so does another TensorFlow or
    dtype policy: `runs rerun` refuses without --force, one line for each, beside the data differences."""
    import tensorflow as tf

    doc = _train(digits_data, mongo_url, tmp_path / "out", n_epochs=1, deterministic=False)
    # What a run recorded on another machine looks like: another TensorFlow, no native bfloat16, float16.
    environment = doc["info"]["environment"]
    other = {**doc, "_id": f"{doc['_id']}-elsewhere",
             "info": {**doc["info"], "environment": {**environment, "tensorflow": "2.0.0",
                                                     "cpu_bfloat16": not environment["cpu_bfloat16"],
                                                     "dtype_policy": "mixed_float16"}}}
    db = pymongo.MongoClient(mongo_url)[DB_NAME]
    db.runs.insert_one(other)
    for run_id, extra in ((doc["_id"], []), (other["_id"], ["environment: TensorFlow: recorded 2.0.0, now "
                                                            f"{tf.__version__}",
                                                            "environment: CPU computes bfloat16 natively: recorded "
                                                            f"{not environment['cpu_bfloat16']}, now "
                                                            f"{environment['cpu_bfloat16']}",
                                                            "environment: dtype policy (mixed_precision): recorded "
                                                            f"mixed_float16, now {environment['dtype_policy']}"])):
        assert cli_main(["runs", "rerun", str(run_id), "--url", mongo_url, "--db", DB_NAME]) == 2
        err = capsys.readouterr().err
        assert f"run {run_id} cannot be repeated as recorded" in err and "--force" in err
        assert "deterministic: the run was trained with deterministic=False" in err
        for line in extra:
            assert line in err, err
        if not extra:
            assert "environment:" not in err  # the same machine and installation
    assert db.runs.count_documents({"info.rerun_of": {"$in": [doc["_id"], other["_id"]]}}) == 0
