"""Several machines through schedulers: Slurm job steps and Kubeflow TFJob's TF_CONFIG (tf_crnn.cluster).

The unit tests set the variables Slurm and the training operator set; the slow ones start a real one-node
Slurm (Debian's slurm-wlm and munge) on this machine with scripts/slurm/local_cluster.sh, in a network
namespace of their own (its loopback only), and run two tasks through srun.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, tiny_params

from tf_crnn import cluster
from tf_crnn.config import ConfigError

# What srun set for task 1 of `srun -N 2 -n 4` on node1 and node2 (copied from a real step, ids changed).
STEP = {"SLURM_JOB_ID": "4711", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4",
        "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURMD_NODENAME": "node1"}
PORT = 20000 + 8 * (4711 % 1500)
# The TF_CONFIG Kubeflow's training operator writes into the pods of a TFJob with 1 Chief and 2 Workers.
TFJOB = {"cluster": {"chief": ["mnist-chief-0.default.svc:2222"],
                     "worker": ["mnist-worker-0.default.svc:2222", "mnist-worker-1.default.svc:2222"]},
         "environment": "cloud"}


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    """None of the surrounding job's variables (the tests may run inside Slurm or a pod)."""
    for key in [k for k in os.environ if k.startswith("SLURM") or k == "TF_CONFIG" or k == "TF_CRNN_SLURM_PORT"]:
        monkeypatch.delenv(key)


def set_env(monkeypatch, values: dict) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_a_slurm_step_of_several_tasks_is_a_cluster_of_workers(monkeypatch):
    from tf_crnn.trainer import auto_strategy_name

    set_env(monkeypatch, STEP)
    assert cluster.source() == "slurm" and cluster.worker_count() == 4 and not cluster.is_chief()
    assert auto_strategy_name() == "multi_worker"
    resolver = cluster.resolver()
    # The spec TensorFlow's SlurmClusterResolver builds: tasks node by node, ports counted up per node.
    assert resolver.cluster_spec().as_dict() == {"worker": [f"node1:{PORT}", f"node1:{PORT + 1}",
                                                            f"node2:{PORT}", f"node2:{PORT + 1}"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators() == {}  # no GPU here: the strategy computes on the CPU
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # left as Slurm set it (TF's resolver would rewrite it)

    monkeypatch.setenv("SLURM_PROCID", "0")
    assert cluster.is_chief()
    monkeypatch.setenv("TF_CRNN_SLURM_PORT", "41000")
    assert cluster.resolver().cluster_spec().as_dict()["worker"][:2] == ["node1:41000", "node1:41001"]
    monkeypatch.setenv("TF_CRNN_SLURM_PORT", "80")
    with pytest.raises(ConfigError, match="TF_CRNN_SLURM_PORT='80' is no port number"):
        cluster.resolver()


def test_one_task_and_the_batch_script_train_alone(monkeypatch, caplog):
    from tf_crnn.trainer import auto_strategy_name

    set_env(monkeypatch, {**STEP, "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "1"})
    assert cluster.source() == "" and cluster.worker_count() == 1 and cluster.is_chief()
    assert cluster.resolver() is None and auto_strategy_name() != "multi_worker"
    # sbatch -n 4 running `python train.py` in its script, without srun: a one-task step, with a warning.
    monkeypatch.delenv("SLURM_STEP_NUM_TASKS")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert cluster.source() == "" and cluster.worker_count() == 1 and cluster.is_chief()
    assert auto_strategy_name() != "multi_worker"
    assert "has 4 tasks, but this process is not one of several tasks of a job step" in caplog.text


def test_tf_config_wins_over_slurm(monkeypatch):
    set_env(monkeypatch, STEP)
    two = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two))
    assert cluster.source() == "TF_CONFIG" and cluster.worker_count() == 2 and cluster.is_chief()
    assert cluster.resolver() is None  # MultiWorkerMirroredStrategy reads TF_CONFIG itself


def test_task_numbers_that_do_not_match_the_nodes_are_refused(monkeypatch):
    # TensorFlow sorts the node names (node10 before node9), Slurm numbers the tasks in its node order.
    set_env(monkeypatch, {**STEP, "SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "node[9-10]",
                          "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURMD_NODENAME": "node9"})
    with pytest.raises(ConfigError, match=r"Slurm task 0 runs on node9, but .* gives it the address node10:"):
        cluster.resolver()
    monkeypatch.setenv("SLURM_PROCID", "x")
    with pytest.raises(ConfigError, match="are not numbers: start the training with srun"):
        cluster.source()


@pytest.mark.parametrize("task,chief", [({"type": "chief", "index": 0}, True), ({"type": "worker", "index": 0}, False),
                                        ({"type": "worker", "index": 1}, False)])
def test_a_tfjob_with_a_chief_and_workers(monkeypatch, task, chief):
    import tensorflow as tf

    monkeypatch.setenv("TF_CONFIG", json.dumps({**TFJOB, "task": task}))
    assert cluster.source() == "TF_CONFIG" and cluster.worker_count() == 3 and cluster.is_chief() is chief
    # What MultiWorkerMirroredStrategy reads from it (its default resolver).
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert resolver.cluster_spec().as_dict() == TFJOB["cluster"]
    assert (resolver.task_type, resolver.task_id) == (task["type"], task["index"])


@pytest.mark.parametrize("role,message", [("evaluator", "tf-crnn evaluates inside the training"),
                                          ("ps", "parameter servers are not supported"),
                                          ("master", "'master' is the old name of 'chief'")])
def test_tfjob_roles_tf_crnn_does_not_train_with_are_refused(monkeypatch, role, message):
    config = {**TFJOB, "cluster": {**TFJOB["cluster"], role: [f"mnist-{role}-0.default.svc:2222"]}}
    for task in ({"type": role, "index": 0}, {"type": "worker", "index": 0}):  # on that pod and on the others
        monkeypatch.setenv("TF_CONFIG", json.dumps({**config, "task": task}))
        with pytest.raises(ConfigError, match=f"TF_CONFIG names a task type '{role}': {message}"):
            cluster.is_chief()


# ---- a real Slurm ------------------------------------------------------------------------------------------

SLURM_PROGRAMS = ("slurmctld", "slurmd", "srun", "sinfo", "munged", "mungekey", "unshare", "ip")

# Run by each task of the step: what tf-crnn resolves (the strategy is not started).
PROBE = textwrap.dedent("""
    import json, os
    from tf_crnn import cluster
    from tf_crnn.trainer import auto_strategy_name
    resolver = cluster.resolver()
    print("PROBE " + json.dumps({
        "procid": int(os.environ["SLURM_PROCID"]), "job": int(os.environ["SLURM_JOB_ID"]),
        "node": os.environ["SLURMD_NODENAME"], "source": cluster.source(), "workers": cluster.worker_count(),
        "chief": cluster.is_chief(), "strategy": auto_strategy_name(), "spec": resolver.cluster_spec().as_dict(),
        "task": [resolver.task_type, resolver.task_id]}), flush=True)
""")


def run_in_slurm(tmp_path: Path, command: list[str], timeout: float, **env) -> subprocess.CompletedProcess:
    """``command`` (srun ...) against a fresh one-node Slurm in a network namespace of its own."""
    missing = [p for p in SLURM_PROGRAMS if not shutil.which(p)]
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)} missing): apt-get install slurm-wlm munge (as .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld, slurmd and munged from a temporary slurm.conf needs root")
    if subprocess.run(["unshare", "--net", "--fork", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --net cannot make a network namespace here: Slurm binds every interface, and the "
                    "test keeps it on a loopback of its own")
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **env)
    environ.pop("TF_CONFIG", None)
    return subprocess.run(["unshare", "--net", "--fork", str(ROOT / "scripts" / "slurm" / "local_cluster.sh"),
                           str(tmp_path / "slurm"), *command], cwd=tmp_path, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def slurm_logs(tmp_path: Path) -> str:
    logs = sorted((tmp_path / "slurm" / "log").glob("*"))
    return "\n".join(f"--- {p.name} ---\n{p.read_text()[-1500:]}" for p in logs if p.is_file())


@pytest.mark.slow
def test_srun_two_tasks_resolve_the_cluster_tensorflow_expects(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    done = run_in_slurm(tmp_path, ["srun", "-n", "2", sys.executable, str(tmp_path / "probe.py")], timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + slurm_logs(tmp_path)
    probes = sorted((json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                     if line.startswith("PROBE ")), key=lambda p: p["procid"])
    assert [p["procid"] for p in probes] == [0, 1], done.stdout
    node, port = socket.gethostname().split(".")[0], 20000 + 8 * (probes[0]["job"] % 1500)
    for probe in probes:
        assert probe["node"] == node and probe["source"] == "slurm" and probe["workers"] == 2
        assert probe["strategy"] == "multi_worker" and probe["chief"] is (probe["procid"] == 0)
        assert probe["spec"] == {"worker": [f"{node}:{port}", f"{node}:{port + 1}"]}
        assert probe["task"] == ["worker", probe["procid"]]


@pytest.mark.slow
def test_the_sbatch_script_trains_one_model_with_two_tasks(digits_data, tmp_path):
    out = tmp_path / "out"
    # eval_batch_size 4: 8 eval batches, 4 for each task.
    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=1, strategy="auto", eval_batch_size=4)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(params.to_dict()))
    # scripts/slurm/train.sbatch as the guide submits it, on one node of two CPUs instead of two nodes of eight.
    # The chief records the run in the embedded SecantusDB, started in the namespace (TF_CRNN_HOME of its own).
    job_log = tmp_path / "job.out"
    sbatch = ROOT / "scripts" / "slurm" / "train.sbatch"
    done = run_in_slurm(tmp_path, ["sbatch", "--wait", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
                                   f"--output={job_log}", str(sbatch), str(config)],
                        timeout=600, TF_CRNN_DIR=str(ROOT), TF_CRNN_HOME=str(tmp_path / "home"))
    output = job_log.read_text() if job_log.exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + output[-5000:] + slurm_logs(tmp_path)
    # srun --label: each line starts with its task's number. Each task scored its share of the 16 eval images
    # (both print the counts of both).
    counts = [line.rsplit("eval images per worker ", 1)[1] for line in output.splitlines()
              if line.startswith(("0: epoch 1/1:", "1: epoch 1/1:"))]
    assert len(counts) == 2 and counts[0] == counts[1], output[-3000:]
    assert sum(map(int, counts[0].split("+"))) == 16 and "0" not in counts[0].split("+")
    assert any(line.startswith("0: ") and "stored in" in line for line in output.splitlines()), output[-3000:]
    assert any(line.startswith("1: ") and "no MongoDB observer was attached" in line for line in output.splitlines())
    assert (out / "export" / "saved_model.pb").is_file() and (out / "run.json").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
