"""``tf-crnn board``: Omniboard on the runs, looked at in a real browser.

The browser test trains a tiny run into a real SecantusDB server, starts
Omniboard (npm package, installed by :func:`tf_crnn.tracking.board.install`) on it and
drives Debian's headless Chromium with Playwright: the runs table lists the run
with its metric columns, the run's metric plot draws every metric and the
artifact previews show ``config.json`` and a PNG report. It skips, saying why,
where Chromium, Playwright, Node.js or Omniboard is missing; ``.ci/run``
installs them. Screenshots: the test's tmp folder and
``/tmp/tf_crnn_board_screenshot.png``.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, tiny_params

from tf_crnn._util import free_port
from tf_crnn.tracking import board
from tf_crnn.tracking import urls as tracking

CHROMIUM = os.environ.get("TF_CRNN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path("/tmp/tf_crnn_board_screenshot.png")
DB_NAME = "tf_crnn_board"


# ---- without Node.js: the command line Omniboard gets, the errors ------------------------

def test_plain_url_becomes_omniboard_m_argument():
    assert board.omniboard_args("mongodb://127.0.0.1:27117/", "tf_crnn") == (["-m", "127.0.0.1:27117:tf_crnn"], {})
    assert board.omniboard_args("mongodb://db.example", "runs") == (["-m", "db.example:27017:runs"], {})


def test_url_with_password_goes_through_the_environment_not_the_arguments():
    args, env = board.omniboard_args("mongodb://trainer:pw%2F7@10.0.0.5:27017/?tls=true", "tf_crnn")
    assert args == [] and "pw" not in " ".join(args)
    # The database is the path; the user still authenticates against admin, as in the original URL.
    assert env == {"MONGO_URI": "mongodb://trainer:pw%2F7@10.0.0.5:27017/tf_crnn?tls=true&authSource=admin"}
    _, env = board.omniboard_args("mongodb://u:p@h1:1,h2:2/users?replicaSet=rs", "tf_crnn")
    assert env["MONGO_URI"] == "mongodb://u:p@h1:1,h2:2/tf_crnn?replicaSet=rs&authSource=users"
    board_ = board.Board("mongodb://trainer:pw@127.0.0.1:9/", "tf_crnn")
    assert board_.describe() == "runs of database 'tf_crnn' at mongodb://trainer:***@127.0.0.1:9/"


def test_missing_node_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(board.BoardError, match=r"Omniboard needs Node.js .*apt-get install nodejs npm"):
        board.install(tmp_path / "omniboard")
    assert not (tmp_path / "omniboard").exists()


def test_unreachable_database_is_reported_before_installing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(tracking.TrackingError, match=r"cannot reach MongoDB at mongodb://u:\*\*\*@127.0.0.1:9/"):
        board.Board("mongodb://u:pw@127.0.0.1:9/", root=tmp_path / "omniboard").start()


def test_a_board_open_to_the_network_needs_a_password_from_the_environment():
    assert board.credentials("127.0.0.1", {}) is None and board.credentials("localhost", {}) is None
    assert board.credentials("::1", {}) is None and board.credentials("127.0.0.2", {}) is None
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(board.BoardError, match=rf"Omniboard on {re.escape(host)} would be open to the network.*"
                                                   r"TF_CRNN_BOARD_PASSWORD=\.\.\..*never on the command line"):
            board.credentials(host, {})
    assert board.credentials("0.0.0.0", {"TF_CRNN_BOARD_PASSWORD": "pw"}) == ("admin", "pw")
    assert board.credentials("0.0.0.0", {"TF_CRNN_BOARD_PASSWORD": "pw", "TF_CRNN_BOARD_USER": "ocr"}) == ("ocr", "pw")
    with pytest.raises(board.BoardError, match="must not contain ':'"):
        board.credentials("0.0.0.0", {"TF_CRNN_BOARD_PASSWORD": "p:w"})


def test_cli_refuses_a_network_address_without_a_password_before_starting_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CRNN_BOARD_PASSWORD", "TF_CRNN_BOARD_USER")}
    proc = subprocess.run([sys.executable, "-m", "tf_crnn.cli", "board", "--host", "0.0.0.0",
                           "--url", "mongodb://127.0.0.1:9/"], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "TF_CRNN_HOME": str(tmp_path / "home")}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "tf-crnn board: error: Omniboard on 0.0.0.0 would be open to the network" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "home" / "omniboard").exists()


def listening_addresses(port: int) -> set[str]:
    """The addresses with a socket listening on TCP ``port`` on this machine, read from /proc/net/tcp{,6}."""
    import ipaddress

    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)  # the kernel prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
                found.add(str(ipaddress.ip_address(raw)))
    return found


# ---- with Omniboard -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def omniboard_root() -> Path:
    """Where Omniboard is installed (``$TF_CRNN_HOME/omniboard``); installed now if missing (minutes)."""
    root = board.install_dir()
    if board.find_omniboard(root):
        return root
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Omniboard needs Node.js and npm, which are not installed (apt-get install nodejs npm)")
    try:
        board.install(root)
    except board.BoardError as e:
        pytest.skip(f"cannot install Omniboard with npm: {e}")
    return root


@pytest.fixture(scope="session")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed "
                                                      "(pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    return CHROMIUM


@pytest.fixture(scope="module")
def trained_run(digits_data, mongo_server, tmp_path_factory):
    """A tiny CRNN trained as a Sacred run into database ``tf_crnn_board``: (run id, pymongo database)."""
    import pymongo

    from tf_crnn.experiment.experiments import ex

    params = tiny_params(digits_data, output_model_dir=str(tmp_path_factory.mktemp("board_run") / "out"), n_epochs=2)
    run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_server.uri, "mongo_db_name": DB_NAME},
                 options={"--capture": "sys"})  # pytest owns the file descriptors
    assert run.status == "COMPLETED"
    return run._id, pymongo.MongoClient(mongo_server.uri)[DB_NAME]


@pytest.mark.slow
def test_cli_serves_runs_in_the_foreground_until_ctrl_c(trained_run, mongo_url, omniboard_root):
    """``tf-crnn board`` with a password in the URL: prints the address (never the password), serves, stops on ^C."""
    import pymongo

    run_id, _ = trained_run
    password = "board-pw-5e1c"
    client = pymongo.MongoClient(mongo_url)
    if "board_viewer" not in {u["user"] for u in client.admin.command("usersInfo")["users"]}:
        client.admin.command("createUser", "board_viewer", pwd=password, roles=["root"])
    secret_url = mongo_url.replace("mongodb://", f"mongodb://board_viewer:{password}@")
    proc = subprocess.Popen([sys.executable, "-m", "tf_crnn.cli", "board", "--url", secret_url, "--db", DB_NAME,
                             "--port", str(free_port())], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline()
        assert first.startswith("Omniboard: http://127.0.0.1:"), first + proc.stdout.read()
        address = first.split()[1]
        with urllib.request.urlopen(f"{address}/api/v1/Runs?select=_id,status", timeout=10) as response:
            assert {"_id": run_id, "status": "COMPLETED"} in json.loads(response.read())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()  # then fail below with what it printed
            proc.wait()
        out = first + proc.stdout.read()  # (communicate() would skip what readline() buffered)
    print(out)
    assert proc.returncode == 0 and "Omniboard stopped" in out, f"exit code {proc.returncode}; output:\n{out}"
    assert "board_viewer:***@" in out and password not in out


@pytest.mark.slow
def test_board_listens_on_loopback_only_and_with_a_password_on_another_address(trained_run, mongo_url,
                                                                              omniboard_root, monkeypatch):
    """127.0.0.1 by default (Omniboard alone would take every interface); another address only with the password
    of the environment, which never shows in Omniboard's command line. 127.0.0.2 stands in for a network address:
    it is this machine's too, so no traffic leaves it."""
    run_id, _ = trained_run
    monkeypatch.delenv("TF_CRNN_BOARD_PASSWORD", raising=False)
    with board.Board(mongo_url, DB_NAME, port=0, root=omniboard_root, metric_columns=()) as local:
        assert listening_addresses(local.port) == {"127.0.0.1"}
        assert local.address == f"http://127.0.0.1:{local.port}/sacred"
        with urllib.request.urlopen(f"{local.address}/api/v1/Runs/count", timeout=10) as response:
            assert response.status == 200
    password = "board-secret-7d2a"
    monkeypatch.setenv("TF_CRNN_BOARD_USER", "reader")
    monkeypatch.setenv("TF_CRNN_BOARD_PASSWORD", password)
    with board.Board(mongo_url, DB_NAME, port=0, root=omniboard_root, metric_columns=(),
                     host="127.0.0.2") as shared:
        assert listening_addresses(shared.port) == {"127.0.0.2"}
        url = f"http://127.0.0.2:{shared.port}/sacred/api/v1/Runs?select=_id"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        wrong = shared._request(url)
        wrong.add_header("Authorization", "Basic " + __import__("base64").b64encode(b"reader:guess").decode())
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=10)
        with urllib.request.urlopen(shared._request(url), timeout=10) as response:
            assert {"_id": run_id} in json.loads(response.read())
        cmdline = Path(f"/proc/{shared._proc.pid}/cmdline").read_bytes().decode()
        assert password not in cmdline and "-u" not in cmdline.split("\0")


def _scroll_to_header(page, name: str):
    """Scroll the runs table (it draws only the columns in view) until column ``name`` is on screen; its box."""
    header = page.locator(".public_fixedDataTable_header .public_fixedDataTableCell_main", has_text=name).first
    previous = None
    for _ in range(60):
        box = header.bounding_box() if header.count() else None
        if box and 200 < box["x"] < page.viewport_size["width"] - 500:
            if box == previous:  # settled
                return box
            previous = box
        else:
            page.mouse.move(800, 400)
            page.mouse.wheel(250, 0)
        page.wait_for_timeout(200)
    raise AssertionError(f"no column {name!r} in the runs table")


def _cell(page, row, header_box) -> str:
    """Text of the cell of ``row`` under the header cell at ``header_box`` (the table redraws as it scrolls)."""
    for _ in range(25):
        for cell in row.locator(".public_fixedDataTableCell_main").all():
            box = cell.bounding_box()
            if box and abs(box["x"] - header_box["x"]) < 2 and abs(box["width"] - header_box["width"]) < 2:
                return cell.inner_text().strip()
        page.wait_for_timeout(200)
    raise AssertionError(f"no cell under the header at x={header_box['x']}")


@pytest.mark.slow
def test_omniboard_shows_run_metrics_plot_and_artifact_previews(trained_run, mongo_url, omniboard_root,
                                                                  chromium, tmp_path):
    import gridfs
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from tf_crnn.experiment.experiments import METRIC_NAMES

    run_id, db = trained_run
    doc = db.runs.find_one({"_id": run_id})
    series = {m["name"]: m["values"] for m in db.metrics.find({"run_id": run_id})}
    fs = gridfs.GridFS(db)
    artifacts = {a["name"]: a["file_id"] for a in doc["artifacts"]}
    pngs = [name for name in artifacts if name.endswith(".png")]
    shots: list[Path] = []
    started = time.monotonic()

    with board.Board(mongo_url, DB_NAME, port=0, root=omniboard_root) as omniboard, sync_playwright() as pw:
        print(f"Omniboard at {omniboard.address} (started in {time.monotonic() - started:.1f} s)")
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1000})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            page.goto(omniboard.address)

            # The runs table: our run, COMPLETED, with the board's metric columns filled from the metrics.
            expect(page.get_by_text("1 experiments")).to_be_visible()
            row = page.locator(".public_fixedDataTable_bodyRow").filter(
                has=page.locator("[test-attr='cell-row_expander-0']"))  # the first row, whatever is in view
            expect(row).to_contain_text("COMPLETED")
            id_box = page.locator(".public_fixedDataTable_header .public_fixedDataTableCell_main",
                                  has_text=re.compile(r"^\s*Id\s*$")).first.bounding_box()
            assert _cell(page, row, id_box) == str(run_id)
            for column, metric, pick in [("Eval CER (best)", "eval.cer", min), ("Eval CER (last)", "eval.cer", None),
                                         ("Sequence accuracy (best)", "eval.sequence_accuracy", max),
                                         ("Train loss (last)", "train.loss", None)]:
                expected = pick(series[metric]) if pick else series[metric][-1]
                shown = _cell(page, row, _scroll_to_header(page, column))
                assert float(shown) == pytest.approx(expected, rel=1e-9), (column, shown)

            # The run's metric plot: one line per metric, in the legend.
            row.get_by_text("►").click()
            details = page.locator(".drilldown-view")
            expect(details.get_by_text("Metrics Plot").first).to_be_visible()
            legend = details.locator(".legendtext")
            expect(legend.first).to_be_attached()
            names = [t.strip() for t in legend.all_text_contents()]
            assert set(METRIC_NAMES) <= set(names), names
            assert details.locator(".scatterlayer .trace").count() >= len(METRIC_NAMES)
            page.wait_for_timeout(500)
            shots.append(tmp_path / "board_runs_and_metrics.png")
            page.screenshot(path=str(shots[-1]), animations="disabled")

            # The run in its own window: the artifact config.json shows as highlighted JSON, as stored.
            details.locator(".glyphicon-resize-full").click()
            modal = page.locator(".modal-dialog")
            modal.get_by_role("button", name="Artifacts", exact=True).click()
            modal.locator(".accordion__title", has_text="config.json").click()
            preview = modal.locator("pre").first
            expect(preview).to_contain_text('"rnn_units"')
            assert json.loads(preview.inner_text()) == json.loads(fs.get(artifacts["config.json"]).read())
            shots.append(tmp_path / "board_artifact_config.png")
            page.screenshot(path=str(shots[-1]), animations="disabled")

            # A PNG report artifact shows as the image itself.
            if pngs:
                modal.locator(".accordion__title", has_text=pngs[0]).click()
                image = modal.locator(f"img[src*='{pngs[0]}']")
                expect(image).to_be_visible()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
                size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
                assert tuple(size) == Image.open(io.BytesIO(fs.get(artifacts[pngs[0]]).read())).size
                shots.append(tmp_path / "board_artifact_png.png")
                page.screenshot(path=str(shots[-1]), animations="disabled")
        finally:
            context.close()

    # One picture of it all: the parts stacked.
    parts = [Image.open(p).convert("RGB") for p in shots]
    sheet = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
    y = 0
    for part in parts:
        sheet.paste(part, (0, y))
        y += part.height
    sheet.save(tmp_path / "board.png")
    shutil.copyfile(tmp_path / "board.png", SCREENSHOT)
    print(f"screenshots: {', '.join(map(str, shots))}; all of them: {tmp_path / 'board.png'} = {SCREENSHOT}")
