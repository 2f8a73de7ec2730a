"""Shared fixtures: tiny configs, generated data, a real SecantusDB server."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tiny_params(tmp_path: Path, **overrides):
    """A CRNN small enough to train in seconds on 2 CPU cores."""
    from tf_crnn.config import Params

    values = dict(
        csv_files_train=[str(tmp_path / "data" / "train" / "labels.csv")],
        csv_files_eval=[str(tmp_path / "data" / "eval" / "labels.csv")],
        lookup_alphabet_file=str(ROOT / "data" / "alphabets" / "digits.json"),
        output_model_dir=str(tmp_path / "output"),
        input_shape=[32, 32], max_width=256,
        cnn_features_list=[8, 16], cnn_kernel_size=[3, 3], cnn_pool_size=[[2, 2], [2, 2]],
        cnn_batch_norm=[False, True], rnn_units=[16], n_epochs=2,
        train_batch_size=16, eval_batch_size=16, learning_rate=3e-3, learning_decay_steps=100,
    )
    values.update(overrides)
    return Params(**values)


def private_network(command: list[str]) -> list[str]:
    """``command`` run in a network namespace of its own (only a loopback, brought up), where ``unshare`` can make
    one (root, or user namespaces allowed); else ``command`` as it is.

    TensorFlow's gRPC servers (the workers of a MultiWorkerMirroredStrategy) bind every interface: in the
    namespace, that is the loopback only, and other processes' ports cannot collide.
    """
    probe = subprocess.run(["unshare", "--net", "--fork", "true"], capture_output=True) if shutil.which("unshare") \
        else None
    if probe is None or probe.returncode != 0 or not shutil.which("ip"):
        return command
    return ["unshare", "--net", "--fork", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]


def train_tiny_export(digits_data: Path, out: Path, **overrides) -> str:
    """Train :func:`tiny_params` one epoch on the digits in-process (``out/model``), export it: the export folder."""
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.data import load_split
    from tf_crnn.trainer import Trainer

    params = tiny_params(digits_data, output_model_dir=str(out / "model"), **{"n_epochs": 1, **overrides})
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    trainer = Trainer(params, alphabet)
    trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=0)
    return trainer.export(str(out / "model" / "export"))


def write_config(tmp_path: Path, digits_data: Path, **overrides) -> Path:
    """``tmp_path/config.json``: :func:`tiny_params` with ``overrides``, for ``train.py with config.json``."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_params(digits_data, **overrides).to_dict()))
    return path


def train_command(config: Path, *updates: str) -> list[str]:
    """``python train.py with CONFIG UPDATES...``."""
    return [sys.executable, str(ROOT / "train.py"), "with", str(config), *updates]


@contextlib.contextmanager
def training_to_kill(config: Path, log_path: Path):
    """A training subprocess that the ``with`` block kills, reaped when the block ends (killed first if alive).

    One Sacred heartbeat an hour, so what MongoDB has of the killed run is what the per-epoch writes put there;
    its output goes to ``log_path``.
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(train_command(config, "--beat-interval=3600"), cwd=ROOT, env=train_env(),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def train_env(**extra) -> dict:
    """The environment of a training subprocess: unbuffered, quiet TensorFlow, one process, recorded."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    for key in ("TF_CONFIG", "TF_CRNN_NO_OBSERVER", "TF_CRNN_DEBUG"):
        env.pop(key, None)
    return {**env, **extra}


def tf_crnn(*args: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    """``python -m tf_crnn.cli ARGS`` with the user's environment, where TF_CPP_MIN_LOG_LEVEL is unset."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "tf_crnn.cli", *args], cwd=ROOT, env=environ, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def checkpoint_epochs(out: Path) -> set[int]:
    """The epochs of the checkpoints in ``out/checkpoints``."""
    return {int(p.name.split("-")[1].split(".")[0]) for p in (out / "checkpoints").glob("ckpt-*.index")}


def metric_series(db, run_id) -> dict:
    """The metric documents of run ``run_id`` in MongoDB database ``db``, by metric name."""
    return {m["name"]: m for m in db.metrics.find({"run_id": run_id})}


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory) -> Path:
    """64 training and 16 eval images of rendered digit strings (tf_crnn.datasets.synthetic)."""
    from tf_crnn.datasets.synthetic import generate_numbers

    root = tmp_path_factory.mktemp("digits")
    generate_numbers(root / "data" / "train", 64, seed=1, min_length=2, max_length=5, workers=1, progress=False)
    generate_numbers(root / "data" / "eval", 16, seed=2, min_length=2, max_length=5, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory):
    """A real SecantusDB server (MongoDB wire protocol) on 127.0.0.1, for the whole session."""
    from secantus import SecantusDBServer

    server = SecantusDBServer(host="127.0.0.1", port=0,
                              storage_path=str(tmp_path_factory.mktemp("secantus")), replica_set_name=None)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mongo_url(mongo_server) -> str:
    return mongo_server.uri


def greedy_transcriptions(trainer, entries, batch_size: int = 16) -> dict:
    """The in-memory model's greedy transcription of checked entries: ``{image path: text}``."""
    from tf_crnn.data import make_dataset
    from tf_crnn.decoding import codes_to_symbols, ctc_decode
    from tf_crnn.model import sequence_lengths

    params, symbols_by_code = trainer.params, trainer.alphabet.symbols_by_code
    found = {}
    for batch in make_dataset(entries, params, batch_size, training=False):
        logits = trainer.model(batch["images"], batch["widths"], training=False)
        codes, _ = ctc_decode(logits, sequence_lengths(batch["widths"], params.width_downsampling))
        for i, symbols in zip(batch["index"].numpy(), codes_to_symbols(codes.numpy()[:, 0], symbols_by_code)):
            found[entries[i].sample.image_path] = "".join(symbols)
    return found
