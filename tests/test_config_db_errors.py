"""Mistakes users make in a config or a database URL get a message that names the key, file or URL.

The database tests run a real SecantusDB daemon with authentication (``secantusd-py --auth``): users
are created while it runs without authentication, then it is restarted with it.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest

from tf_crnn._util import free_port
from tf_crnn.config import ConfigError, Params, check_config_files
from tf_crnn.tracking.urls import TrackingError, ping

PASSWORD = "pw-9f3e/x"  # a '/' must be percent-encoded in a URL


def _start(storage: Path, port: int, auth: bool) -> subprocess.Popen:
    daemon = Path(sys.executable).with_name("secantusd-py")
    proc = subprocess.Popen([str(daemon), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
                             "--log-level", "ERROR", "--standalone", *(["--auth"] if auth else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return proc
        except pymongo.errors.PyMongoError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("secantusd-py did not start")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """``mongodb://127.0.0.1:PORT/`` of a SecantusDB that requires SCRAM authentication (user ``trainer``)."""
    storage, port = tmp_path_factory.mktemp("auth_db"), free_port()
    setup = _start(storage, port, auth=False)
    with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/") as client:
        client.admin.command("createUser", "trainer", pwd=PASSWORD, roles=["root"])
    setup.terminate()
    setup.wait(30)
    server = _start(storage, port, auth=True)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(30)


def test_wrong_password_is_named_as_such(auth_server):
    with pytest.raises(TrackingError) as caught:
        ping(f"mongodb://trainer:wrong-pw@{auth_server}/", db_name="tf_crnn")
    message = str(caught.value)
    assert "rejected the credentials (authentication failed)" in message
    assert f"mongodb://trainer:***@{auth_server}/" in message and "wrong-pw" not in message
    assert "Start that server" not in message


def test_missing_credentials_are_found_before_the_first_write(auth_server):
    ping(f"mongodb://{auth_server}/")  # ping needs no authentication: this alone would not notice
    with pytest.raises(TrackingError, match=r"requires authentication to use database 'tf_crnn'.*"
                                            r"mongodb://USER:PASSWORD@HOST:PORT/\?authSource=admin"):
        ping(f"mongodb://{auth_server}/", db_name="tf_crnn")
    ping(f"mongodb://trainer:pw-9f3e%2Fx@{auth_server}/?authSource=admin", db_name="tf_crnn")  # the right ones pass


def test_tls_and_unreachable_servers_have_their_own_messages(mongo_server):
    with pytest.raises(TrackingError, match=r"TLS connection to MongoDB at .*\?tls=true failed"):
        ping(mongo_server.uri + "?tls=true", timeout_s=2.0)
    with pytest.raises(TrackingError, match=r"cannot reach MongoDB at mongodb://u:\*\*\*@127.0.0.1:9/ .*"
                                            r"TF_CRNN_NO_OBSERVER=1 trains without recording a run"):
        ping("mongodb://u:secret@127.0.0.1:9/", timeout_s=0.5)
    with pytest.raises(TrackingError, match=r"mongodb://127.0.0.1:9/\?tls=true&tlsCAFile=/no/ca.pem is not a "
                                            r"usable MongoDB URL .*/no/ca.pem"):
        ping("mongodb://127.0.0.1:9/?tls=true&tlsCAFile=/no/ca.pem", timeout_s=0.5)


@pytest.mark.parametrize("key, value, expected", [
    ("n_epochs", "3", "n_epochs must be an integer, got '3'"),
    ("n_epochs", 2.5, "n_epochs must be an integer, got 2.5"),
    ("train_batch_size", True, "train_batch_size must be an integer, got True"),
    ("learning_rate", "1e-3", "learning_rate must be a number, got '1e-3'"),
    ("data_augmentation", "yes", "data_augmentation must be true or false, got 'yes'"),
    ("input_shape", [32.5, 100], "input_shape must be a list of integers, got [32.5, 100]"),
    ("rnn_units", 256, "rnn_units must be a list of integers, got 256"),
    ("mongo_url", 27017, "mongo_url must be a string or null, got 27017"),
    ("steps_per_epoch", 0, "steps_per_epoch must be >= 1, or null"),
    ("steps_per_epoch", 2.0, "steps_per_epoch must be an integer or null, got 2.0"),
    ("n_epochs", 0, "n_epochs and batch sizes must be >= 1"),
    ("strategy", "tpu", "strategy must be 'auto', 'default', 'one_device', 'mirrored' or 'multi_worker', got 'tpu'"),
    ("csv_delimiter", "|", "csv_delimiter and string_split_delimiter must be two different"),
    ("jit_compile", True, "deterministic=True and jit_compile=True cannot go together"),
])
def test_every_key_is_checked_for_type_and_range(key, value, expected):
    with pytest.raises(ConfigError) as caught:
        Params(**{key: value, **({"deterministic": True} if key == "jit_compile" else {})})
    assert str(caught.value).startswith(expected), str(caught.value)


def test_valid_values_pass_and_numbers_stay_numbers():
    params = Params(learning_rate=1, steps_per_epoch=5, csv_files_train="one.csv", dropout=0)
    assert params.learning_rate == 1 and params.steps_per_epoch == 5 and params.csv_files_train == ["one.csv"]


def test_a_broken_config_file_is_named_with_line_and_column(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "n_epochs": 3,\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"config file {broken} is not valid JSON: line 3, column 1"):
        check_config_files(["with", str(broken), "n_epochs=2"])
    with pytest.raises(ConfigError, match=rf"config file {tmp_path / 'nope.json'} not found"):
        Params.from_file(tmp_path / "nope.json")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        Params.from_file(tmp_path / "list.json")
    check_config_files(["with", "n_epochs=2", "-m", "x.json"])  # only files right after 'with' are read


def test_a_training_against_a_server_wanting_credentials_stops_before_it_starts(auth_server, digits_data, tmp_path):
    from conftest import tiny_params

    from tf_crnn.experiment.experiments import ex

    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1)
    with pytest.raises(TrackingError, match="requires authentication to use database 'tf_crnn_auth'"):
        ex.run(config_updates={**params.to_dict(), "mongo_url": f"mongodb://{auth_server}/",
                               "mongo_db_name": "tf_crnn_auth"}, options={"--capture": "sys"})
    assert not (tmp_path / "out" / "checkpoints").exists()  # nothing trained


def test_urls_are_taken_apart_by_pymongos_parser_ipv6_and_srv_without_dns():
    from tf_crnn.tracking.urls import host_port, hosts

    assert host_port("mongodb://[::1]/tf_crnn") == "[::1]:27017"  # was "[::1]" without its port
    assert host_port("mongodb://u:p@[::1]:27018,other:1/db?tls=true") == "[::1]:27018"
    assert hosts("mongodb://a,b:2/") == [("a", 27017), ("b", 2)]
    # SRV: one DNS name whose records give hosts and ports; nothing is resolved here (no network in tests)
    assert hosts("mongodb+srv://u:p@cluster0.example.invalid/db?retryWrites=true") == [
        ("cluster0.example.invalid", None)]
    assert host_port("mongodb+srv://cluster0.example.invalid/") is None  # was "cluster0...:27017"
    with pytest.raises(TrackingError, match=r"postgresql://u:\*\*\*@h/db is not a MongoDB URL"):
        hosts("postgresql://u:pw@h/db")


def test_every_secret_a_url_carries_is_redacted_and_scrubbed():
    from tf_crnn.tracking.urls import redact_url, scrub, url_secrets

    url = ("mongodb://trainer:p%2Fw@db:27017/?tls=true&tlsCertificateKeyFile=/k.pem"
           "&tlsCertificateKeyFilePassword=k3y%26pass&authMechanism=MONGODB-AWS"
           "&authMechanismProperties=AWS_SESSION_TOKEN:t0k%2Ben,SERVICE_NAME:x")
    shown = redact_url(url)
    assert shown == ("mongodb://trainer:***@db:27017/?tls=true&tlsCertificateKeyFile=/k.pem"
                     "&tlsCertificateKeyFilePassword=***&authMechanism=MONGODB-AWS"
                     "&authMechanismProperties=AWS_SESSION_TOKEN:***,SERVICE_NAME:x")
    secrets = url_secrets(url)
    for secret in ("p/w", "p%2Fw", "k3y&pass", "k3y%26pass", "t0k+en", "t0k%2Ben"):
        assert secret in secrets
    message = f"auth failed for {url} (password p/w, key k3y&pass, token t0k+en)"
    assert scrub(message, secrets) == f"auth failed for {shown} (password ***, key ***, token ***)"
    assert redact_url("mongodb://h/?tls=true") == "mongodb://h/?tls=true" and url_secrets("mongodb://h/") == ()



def test_storage_urls_of_sweeps_keep_their_path_and_lose_their_password():
    from tf_crnn.tracking.urls import redact_url, url_secrets

    # An SQLite URL has no secret and an empty host: shown as written (urlunsplit would drop a slash).
    assert redact_url("sqlite:////tmp/sweeps/optuna.sqlite3") == "sqlite:////tmp/sweeps/optuna.sqlite3"
    # libpq also takes the password and the key's passphrase as query options.
    url = "postgresql://sweeper@db:5432/sweeps?password=pw%21&sslmode=require&sslpassword=kp"
    assert redact_url(url) == "postgresql://sweeper@db:5432/sweeps?password=***&sslmode=require&sslpassword=***"
    assert {"pw!", "pw%21", "kp"} <= set(url_secrets(url))
