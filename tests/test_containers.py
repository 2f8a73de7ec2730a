"""The container files: Dockerfile (GPU image by default, a CPU variant by build arguments) and docker-compose.yml
(MongoDB, Omniboard, trainer).

No Docker engine runs in CI: the fast tests parse the files and check what they must say. The slow test at the end
builds the CPU image with podman and trains the default job in it (scripts/build_image.sh); it runs only on demand
(TF_CRNN_BUILD_IMAGE=1), as building installs TensorFlow into the image.
"""
from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import tomllib
import yaml
from conftest import ROOT
from dockerfile_parse import DockerfileParser

from tf_crnn.config import Params


def _installed_tensorflow() -> str:
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    pytest.skip("no TensorFlow distribution installed")


@pytest.fixture(scope="module")
def dockerfile():
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _instructions(dockerfile, name):
    return [i["value"] for i in dockerfile.structure if i["instruction"] == name]


def _build_args(dockerfile) -> dict[str, str]:
    """The Dockerfile's ARG defaults, before and after FROM, quotes removed."""
    args = {}
    for value in _instructions(dockerfile, "ARG"):
        name, _, default = value.partition("=")
        args[name] = default.strip('"')
    return args


def _lock_without(lock: str, *names: str) -> str:
    """scripts/lock_without.py run as the Dockerfile runs it."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "lock_without.py"), lock, *names],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def _pins(lock_text: str) -> dict[str, str]:
    """``{name: "name==version --hash=... --hash=..."}`` of a lock file's text, its comments left out."""
    entries, name = {}, None
    for line in lock_text.splitlines():
        if re.match(r"[A-Za-z0-9]", line):
            name = re.match(r"[A-Za-z0-9._-]+", line).group(0)
            entries[name] = line.rstrip(" \\")
        elif name and line.strip().startswith("--hash"):
            entries[name] += " " + line.strip().rstrip(" \\")
    return entries


def test_base_image_is_tensorflow_gpu_of_the_installed_version(dockerfile):
    # The base is a build argument (BASE) whose default is TensorFlow's GPU image.
    assert _instructions(dockerfile, "FROM") == ["${BASE}"]
    image, tag = dockerfile.baseimage.split(":")
    assert image == "tensorflow/tensorflow"
    version, variant = re.fullmatch(r"(\d+\.\d+\.\d+)-(\w+)", tag).groups()
    assert variant == "gpu"
    assert version == _installed_tensorflow()
    # ... and the series the package's own extras pin.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for pin in extras["cpu"] + extras["gpu"]:
        series = re.search(r"==(\d+\.\d+)\.\*", pin).group(1)
        assert version.startswith(series + "."), pin
    # ... and the exact version both lock files pin.
    for lock, dist in (("gpu", "tensorflow"), ("cpu", "tensorflow-cpu")):
        text = (ROOT / f"requirements/{lock}.txt").read_text()
        assert re.search(rf"^{dist}=={re.escape(version)} ", text, re.MULTILINE), lock


def test_image_installs_the_lock_then_the_package_and_runs_train_py(dockerfile):
    runs = _instructions(dockerfile, "RUN")
    copies = _instructions(dockerfile, "COPY")
    # Dependencies from a lock file, hashes checked, in a layer before the code: a code change keeps that layer.
    deps = next(i for i, r in enumerate(runs) if "--require-hashes" in r)
    assert re.search(r"pip install --require-hashes -r ", runs[deps])
    assert copies.index("requirements/ requirements/") < copies.index(". .")
    package = next(i for i, r in enumerate(runs) if re.search(r"pip install --no-deps --no-build-isolation -e \.", r))
    assert deps < package
    # No extra: TensorFlow is the lock's (CPU) or the base image's (GPU), never a second one from an extra.
    assert not any("[cpu" in r or "[gpu" in r for r in runs)
    assert _instructions(dockerfile, "WORKDIR") == ["/tf-crnn"]
    assert "TF_CRNN_HOME=/tf-crnn/output/" in " ".join(_instructions(dockerfile, "ENV"))
    assert json.loads(_instructions(dockerfile, "ENTRYPOINT")[-1]) == ["python", "train.py"]
    cmd = json.loads(_instructions(dockerfile, "CMD")[-1])
    assert cmd[0] == "with" and (ROOT / cmd[1]).is_file()


def test_gpu_image_keeps_the_base_tensorflow_and_takes_everything_else_from_the_lock(dockerfile):
    args = _build_args(dockerfile)
    assert args["LOCK"] == "requirements/gpu.txt"
    assert args["BASE_PROVIDES"].split() == ["tensorflow", "nvidia-*"]
    gpu = _pins(_lock_without(args["LOCK"], *args["BASE_PROVIDES"].split()))
    assert not any(name == "tensorflow" or name.startswith("nvidia-") for name in gpu)
    # The rest is the CPU lock without tensorflow-cpu, versions and hashes alike: both images run what the tests ran.
    cpu = _pins((ROOT / "requirements/cpu.txt").read_text())
    assert cpu.pop("tensorflow-cpu").startswith("tensorflow-cpu==")
    assert gpu == cpu
    # Without names, the lock passes unchanged (the CPU variant: BASE_PROVIDES empty).
    assert _lock_without("requirements/cpu.txt") == (ROOT / "requirements/cpu.txt").read_text()


def test_dockerignore_keeps_what_the_image_needs():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatch(p, pat.lstrip("/").replace("**/", "")) or fnmatch.fnmatch(p, pat)
                   for pat in patterns for p in prefixes)

    for needed in ("train.py", "pyproject.toml", "README.md", "config_template.json",
                   "tf_crnn/experiment/experiments.py", "data/alphabets/digits.json", "experiments/fraktur.json",
                   "requirements/cpu.txt", "requirements/gpu.txt", "scripts/lock_without.py"):
        assert (ROOT / needed).exists() and not ignored(needed), needed
    for junk in (".git/HEAD", ".venv/bin/python", "output/digits/checkpoints", "tf_crnn/__pycache__/x.pyc",
                 "build/container/rootfs.tar", "build/container/output/digits/export"):
        assert ignored(junk), junk


def test_compose_runs_mongodb_omniboard_and_a_gpu_trainer(compose):
    services = compose["services"]
    assert set(services) >= {"mongo", "omniboard", "trainer"}
    assert services["mongo"]["image"] == "mongo:7"

    omniboard = services["omniboard"]
    assert omniboard["image"].startswith("node:")
    command = omniboard["command"]
    assert "npx" in command and any(c.startswith("omniboard") for c in command)
    db_name = Params().mongo_db_name
    assert command[command.index("-m") + 1] == f"mongo:27017:{db_name}"
    assert "mongo" in omniboard["depends_on"]

    trainer = services["trainer"]
    assert trainer["build"] == "."
    assert trainer["environment"]["TF_CRNN_MONGO_URL"] == "mongodb://mongo:27017/"
    assert "mongo" in trainer["depends_on"]
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert trainer["command"][0] == "with" and (ROOT / trainer["command"][1]).is_file()


def test_compose_publishes_mongodb_and_omniboard_on_loopback_only(compose):
    # MongoDB runs without authentication: published on another interface, anyone reaching it owns every run.
    services = compose["services"]
    assert services["mongo"]["ports"] == ["127.0.0.1:27017:27017"]
    assert services["omniboard"]["ports"] == ["127.0.0.1:9000:9000"]
    assert "ports" not in services["trainer"]
    # The file says how to open them on purpose, and that MongoDB then needs authentication.
    text = (ROOT / "docker-compose.yml").read_text()
    assert "MONGO_INITDB_ROOT_USERNAME" in text and "authSource=admin" in text


def test_tfjob_manifest_runs_the_image_as_a_chief_and_workers(compose, monkeypatch):
    from tf_crnn import cluster

    job = yaml.safe_load((ROOT / "scripts" / "kubeflow" / "tfjob.yaml").read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "TFJob"
    replicas = job["spec"]["tfReplicaSpecs"]
    assert set(replicas) == {"Chief", "Worker"} and replicas["Chief"]["replicas"] == 1  # no Evaluator, no PS
    for spec in replicas.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "tensorflow"  # the operator's name for the training container
        # The image docker-compose.yml builds from the Dockerfile, whose entry point is train.py.
        assert container["image"].rsplit("/", 1)[-1] == compose["services"]["trainer"]["image"]
        assert container["args"][0] == "with" and (ROOT / container["args"][1]).is_file()
        assert all(arg.split("=", 1)[0] in Params.__dataclass_fields__ for arg in container["args"][2:])
        assert {"name": "tfjob-port", "containerPort": 2222} in container["ports"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tf-crnn/data", "/tf-crnn/output"} <= mounts

    # The TF_CONFIG the operator writes into each pod: 3 workers, the chief records.
    name = job["metadata"]["name"]
    tf_cluster = {kind.lower(): [f"{name}-{kind.lower()}-{i}.default.svc:2222" for i in range(spec["replicas"])]
                  for kind, spec in replicas.items()}
    for kind, spec in replicas.items():
        for index in range(spec["replicas"]):
            monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": tf_cluster, "environment": "cloud",
                                                        "task": {"type": kind.lower(), "index": index}}))
            assert cluster.worker_count() == 3 and cluster.is_chief() is (kind == "Chief")


@pytest.mark.slow
def test_cpu_image_builds_and_trains_the_default_job_inside(tmp_path):
    """scripts/build_image.sh: Debian base (mmdebstrap), tf-crnn:cpu (podman build), config_template.json trained in it.

    5 to 10 minutes on 2 CPU cores, ~500 MB downloaded from PyPI and Debian: only with TF_CRNN_BUILD_IMAGE=1.
    """
    missing = [tool for tool in ("podman", "mmdebstrap") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"building the image needs {' and '.join(missing)} (apt-get install podman mmdebstrap)")
    if os.environ.get("TF_CRNN_BUILD_IMAGE") != "1":
        pytest.skip("builds a container image with TensorFlow (5-10 min, ~500 MB of downloads): "
                    "set TF_CRNN_BUILD_IMAGE=1 to run it")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "build_image.sh")], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3600,
                          env={**os.environ, "TF_CRNN_IMAGE_WORK": str(tmp_path)})
    assert done.returncode == 0, done.stdout[-5000:]
    log = (tmp_path / "train.log").read_text()
    # The six epochs ran inside the container, each evaluated, and the run went to the embedded server there.
    epochs = re.findall(r"epoch (\d)/6: train\.loss [\d.]+, eval\.loss .*eval\.cer ([\d.]+)", log)
    assert [e for e, _ in epochs] == ["1", "2", "3", "4", "5", "6"], log[-3000:]
    assert "stored in mongodb://127.0.0.1:" in log
    # Read back by a second container from the volume: the record survived its server, and the export is on the host.
    (run,) = json.loads((tmp_path / "runs.json").read_text())
    assert run["status"] == "COMPLETED" and run["experiment"] == "crnn"
    assert run["best_cer"] == pytest.approx(min(float(c) for _, c in epochs), abs=5e-5)  # printed to 4 places
    assert (tmp_path / "output" / "digits" / "export" / "saved_model.pb").is_file()
    assert (tmp_path / "output" / ".tf_crnn" / "db" / "data").is_dir()
