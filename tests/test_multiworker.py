"""Several machines: two worker processes on 127.0.0.1 train one model with MultiWorkerMirroredStrategy (TF_CONFIG)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pymongo
import pytest
from conftest import ROOT, tiny_params

pytestmark = pytest.mark.slow

# Runs train.py's experiment in a worker process and, after fit, writes what the test compares:
# a checksum of the model's weights, the optimizer step and where the checkpoints went.
WORKER = textwrap.dedent("""
    import hashlib, json, os, sys
    import numpy as np
    from tf_crnn import trainer

    fit = trainer.Trainer.fit

    def fit_and_report(self, *args, **kwargs):
        results = fit(self, *args, **kwargs)
        digest = hashlib.sha256()
        for weight in self.model.weights:
            digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
        with open(os.environ["WEIGHTS_REPORT"], "w") as f:
            json.dump({"sha256": digest.hexdigest(), "step": int(self.optimizer.iterations.numpy()),
                       "replicas": self.strategy.num_replicas_in_sync, "chief": self.is_chief,
                       "checkpoints": self.manager.directory, "scratch": self.scratch_dir,
                       "train_loss": results[-1].metrics["train.loss"],
                       "eval_cer": results[-1].metrics["eval.cer"],
                       "each": {w.path: hashlib.sha256(np.ascontiguousarray(w.numpy()).tobytes()).hexdigest()[:12]
                                for w in self.model.weights}}, f)
        return results

    trainer.Trainer.fit = fit_and_report
    from tf_crnn.experiment.experiments import ex
    ex.run_commandline(["train.py", *sys.argv[1:]])
""")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_the_same_weights_and_only_the_chief_records(digits_data, mongo_url, tmp_path):
    out = tmp_path / "out"  # one folder for both, as on a shared file system: non-chiefs must not write it
    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=1, steps_per_epoch=2,
                         # auto, as the docs tell users (it once started the runtime before the strategy existed)
                         strategy="auto", mongo_url=mongo_url, mongo_db_name="tf_crnn_multi")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(params.to_dict()))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}

    procs, logs = [], []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
                   WEIGHTS_REPORT=str(tmp_path / f"weights{index}.json"),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        env.pop("TF_CRNN_NO_OBSERVER", None)
        logs.append(open(tmp_path / f"worker{index}.log", "wb"))
        procs.append(subprocess.Popen([sys.executable, str(script), "with", str(config)], cwd=ROOT, env=env,
                                      stdout=logs[-1], stderr=subprocess.STDOUT))
    try:
        for proc in procs:
            proc.wait(timeout=400)
    finally:
        for proc, log in zip(procs, logs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    tails = "\n".join(f"--- worker {i} ---\n" + (tmp_path / f"worker{i}.log").read_text()[-2500:] for i in range(2))
    assert [p.returncode for p in procs] == [0, 0], tails

    chief, other = (json.loads((tmp_path / f"weights{i}.json").read_text()) for i in range(2))
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["step"] == other["step"] == 2
    # All-reduced gradients and averaged batch-norm statistics: the very same weights.
    assert chief["sha256"] == other["sha256"], [k for k in chief["each"] if chief["each"][k] != other["each"][k]]
    assert chief["train_loss"] == pytest.approx(other["train_loss"])  # a loss over the global batch
    assert chief["eval_cer"] == other["eval_cer"]  # each scored its share; the sums of both are all-reduced

    # Only the chief writes output_model_dir; the other worker saved into a scratch folder, removed at exit.
    assert chief["chief"] and not other["chief"]
    assert Path(chief["checkpoints"]) == out / "checkpoints" and chief["scratch"] is None
    assert not Path(other["checkpoints"]).is_relative_to(out) and not os.path.exists(other["scratch"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    assert (out / "export" / "saved_model.pb").is_file()

    # One Sacred run, the chief's.
    db = pymongo.MongoClient(mongo_url)["tf_crnn_multi"]
    runs = list(db.runs.find())
    assert len(runs) == 1 and runs[0]["status"] == "COMPLETED"
    assert json.loads((out / "run.json").read_text())["run_id"] == runs[0]["_id"]
    assert {m["run_id"] for m in db.metrics.find()} == {runs[0]["_id"]}
    assert f"run {runs[0]['_id']} stored in" in (tmp_path / "worker0.log").read_text()
    assert "no MongoDB observer was attached" in (tmp_path / "worker1.log").read_text()


# Evaluates one set (both CSVs of the digits: 80 images) with the weights of output_model_dir's checkpoint ("evaluate")
# or, in "train" mode, trains first (evaluating 8 images per epoch) and writes that checkpoint; reports metrics,
# predictions, counts.
EVALUATOR = textwrap.dedent("""
    import json, logging, os, sys
    import tensorflow as tf
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.config import Params
    from tf_crnn.data import load_split, make_dataset
    from tf_crnn.trainer import Trainer

    logging.basicConfig(level=logging.INFO)
    params = Params(**json.load(open(sys.argv[1])))
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
    trainer = Trainer(params, alphabet)
    if sys.argv[2] == "train":
        train = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
        trainer.fit(train, train[:8], seed=0)
    else:
        trainer.restore()
    metrics, predictions = trainer.evaluate(entries)
    batches = [len(b["index"]) for b in make_dataset(entries, params, params.eval_batch_size, training=False)]
    with open(os.environ["REPORT"], "w") as f:
        json.dump({"metrics": metrics, "predictions": ["".join(p) for p in predictions], "counts": trainer.eval_counts,
                   "batches": batches, "replicas": trainer.strategy.num_replicas_in_sync,
                   "multi_worker": isinstance(trainer.strategy, tf.distribute.MultiWorkerMirroredStrategy),
                   "chief": trainer.is_chief}, f)
""")

# Starts the processes of a cluster (one JSON list of {"argv", "env", "log"}) and waits for them: run inside one
# network namespace (conftest.private_network), they all share its loopback.
LAUNCHER = textwrap.dedent("""
    import json, subprocess, sys
    procs = [subprocess.Popen(p["argv"], env=p["env"], stdout=open(p["log"], "wb"), stderr=subprocess.STDOUT)
             for p in json.load(open(sys.argv[1]))]
    try:
        sys.exit(max(p.wait(timeout=400) for p in procs))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
""")


def test_two_workers_each_evaluate_their_share_and_report_one_workers_metrics(digits_data, tmp_path):
    from conftest import private_network

    out = tmp_path / "out"
    # eval_batch_size 5: the width buckets make 19 batches of 1 to 5 (the worker gets a filler batch).
    # Trained long enough to read some digits (one epoch transcribes every image as "").
    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=25, learning_rate=1e-2,
                         learning_decay_steps=10000, data_augmentation=False, strategy="auto", eval_batch_size=5,
                         csv_files_eval=[str(digits_data / "data" / s / "labels.csv") for s in ("train", "eval")])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(params.to_dict()))
    script = tmp_path / "evaluator.py"
    script.write_text(EVALUATOR)
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    base.pop("TF_CONFIG", None)
    one = subprocess.run([sys.executable, str(script), str(config), "train"], cwd=ROOT, capture_output=True,
                         text=True, timeout=400, env=dict(base, REPORT=str(tmp_path / "one.json")))
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]

    # Kubeflow TFJob's layout: a chief and a worker (the chief is worker 0 of the collective).
    chief_port, worker_port = _free_ports(2)
    cluster = {"chief": [f"127.0.0.1:{chief_port}"], "worker": [f"127.0.0.1:{worker_port}"]}
    processes = [{"argv": [sys.executable, str(script), str(config), "evaluate"], "log": str(tmp_path / f"{name}.log"),
                  "env": dict(base, REPORT=str(tmp_path / f"{name}.json"),
                              TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": name, "index": 0},
                                                    "environment": "cloud"}))}
                 for name in ("chief", "worker")]
    (tmp_path / "cluster.json").write_text(json.dumps(processes))
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    run = subprocess.run(private_network([sys.executable, str(tmp_path / "launcher.py"),
                                          str(tmp_path / "cluster.json")]), cwd=ROOT, timeout=500)
    tails = "\n".join(f"--- {n} ---\n" + (tmp_path / f"{n}.log").read_text()[-2500:] for n in ("chief", "worker"))
    assert run.returncode == 0, tails

    single = json.loads((tmp_path / "one.json").read_text())
    chief, worker = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("chief", "worker"))
    assert not single["multi_worker"] and single["counts"] == [80]
    assert chief["multi_worker"] and worker["multi_worker"]
    assert chief["replicas"] == worker["replicas"] == 2 and chief["chief"] and not worker["chief"]
    # Each scored its batches: the chief batches 0, 2, 4, ... of the one worker's, the worker 1, 3, ...
    batches = single["batches"]
    assert len(batches) % 2 == 1 and sum(batches) == 80
    assert chief["counts"] == worker["counts"] == [sum(batches[0::2]), sum(batches[1::2])]
    assert abs(chief["counts"][0] - chief["counts"][1]) <= params.eval_batch_size
    assert "worker 0 of 2 scored" in (tmp_path / "chief.log").read_text()
    assert "worker 1 of 2 scored" in (tmp_path / "worker.log").read_text()
    # The same numbers as one worker on the same batches: the counts exactly, float sums up to their order.
    for report in (chief, worker):
        assert report["predictions"] == single["predictions"]
        for name in ("cer", "wer", "sequence_accuracy"):
            assert report["metrics"][name] == single["metrics"][name], name
        for name in ("loss", "char_accuracy"):
            assert report["metrics"][name] == pytest.approx(single["metrics"][name], rel=1e-12, abs=1e-12), name
    assert 0 < single["metrics"]["cer"] < 0.9 and len(set(single["predictions"])) > 10  # distinct readings


# One process, two logical CPUs: the default strategy and MirroredStrategy over both evaluate the same weights.
TWO_DEVICES = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.config import Params
    from tf_crnn.data import load_split
    from tf_crnn.trainer import Trainer

    params = Params(**json.load(open(sys.argv[1])))
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
    one = Trainer(params, alphabet, tf.distribute.get_strategy())
    two = Trainer(params, alphabet, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    two.model.set_weights(one.model.get_weights())
    reports = []
    for trainer in (one, two):
        metrics, predictions = trainer.evaluate(entries)
        reports.append({"metrics": metrics, "predictions": ["".join(p) for p in predictions],
                        "counts": trainer.eval_counts, "local": trainer.local_replicas()})
    print("REPORTS " + json.dumps(reports))
""")


def test_two_devices_of_one_worker_score_whole_batches_in_turn(digits_data, tmp_path):
    # Both CSVs (80 images) in batches of 4: 23 batches, the second device gets a filler batch at the last step;
    # of 6: 16 batches, none.
    for batch_size in (4, 6):
        params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), eval_batch_size=batch_size,
                             csv_files_eval=[str(digits_data / "data" / s / "labels.csv") for s in ("train", "eval")])
        config = tmp_path / "config.json"
        config.write_text(json.dumps(params.to_dict()))
        script = tmp_path / "two_devices.py"
        script.write_text(TWO_DEVICES)
        done = subprocess.run([sys.executable, str(script), str(config)], cwd=ROOT, capture_output=True, text=True,
                              timeout=400, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        one, two = json.loads(done.stdout.split("REPORTS ", 1)[1])
        assert (one["local"], two["local"]) == (1, 2) and one["counts"] == two["counts"] == [80]
        assert two["predictions"] == one["predictions"]
        assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-12, abs=1e-12)
