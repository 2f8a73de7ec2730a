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
    assert chief["eval_cer"] == pytest.approx(other["eval_cer"])  # both evaluated every eval image

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
