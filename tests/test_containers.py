"""The container files: Dockerfile (nvidia-docker image) and docker-compose.yml (MongoDB, Omniboard, trainer).

No Docker engine runs in CI: these tests parse the files and check what they must say.
"""
from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re

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


def test_base_image_is_tensorflow_gpu_of_the_installed_version(dockerfile):
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


def test_image_installs_the_package_without_a_tensorflow_extra_and_runs_train_py(dockerfile):
    runs = " && ".join(_instructions(dockerfile, "RUN"))
    assert re.search(r"pip install (--no-deps )?-e \.(\s|$|&)", runs)
    # TensorFlow is the base image's: no extra, no second TensorFlow from PyPI.
    assert "[cpu" not in runs and "[gpu" not in runs and not re.search(r"pip install[^&]*tensorflow", runs)
    assert _instructions(dockerfile, "WORKDIR") == ["/tf-crnn"]
    assert json.loads(_instructions(dockerfile, "ENTRYPOINT")[-1]) == ["python", "train.py"]
    cmd = json.loads(_instructions(dockerfile, "CMD")[-1])
    assert cmd[0] == "with" and (ROOT / cmd[1]).is_file()
    assert "COPY . ." in [f"COPY {v}" for v in _instructions(dockerfile, "COPY")]


def test_dockerignore_keeps_what_the_image_needs():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatch(p, pat.lstrip("/").replace("**/", "")) or fnmatch.fnmatch(p, pat)
                   for pat in patterns for p in prefixes)

    for needed in ("train.py", "pyproject.toml", "README.md", "config_template.json",
                   "tf_crnn/experiment/experiments.py",
                   "data/alphabets/digits.json", "experiments/fraktur.json"):
        assert (ROOT / needed).exists() and not ignored(needed), needed
    for junk in (".git/HEAD", ".venv/bin/python", "output/digits/checkpoints", "tf_crnn/__pycache__/x.pyc"):
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
    assert "9000:9000" in omniboard["ports"] and "mongo" in omniboard["depends_on"]

    trainer = services["trainer"]
    assert trainer["build"] == "."
    assert trainer["environment"]["TF_CRNN_MONGO_URL"] == "mongodb://mongo:27017/"
    assert "mongo" in trainer["depends_on"]
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert trainer["command"][0] == "with" and (ROOT / trainer["command"][1]).is_file()
