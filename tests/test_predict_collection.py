"""tf-crnn predict over a whole collection: folders, CSVs and files; -o TSV / JSON Lines in input order; --resume
after a real kill -9 of a real tf-crnn predict process."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, tf_crnn, train_tiny_export, wait_for

from tf_crnn.collection import gather, walk_images, written_paths


@pytest.fixture(scope="module")
def export(digits_data, tmp_path_factory) -> str:
    """A tiny CRNN trained long enough to read the digits (one epoch transcribes every image as "")."""
    return train_tiny_export(digits_data, tmp_path_factory.mktemp("collection"), n_epochs=30, learning_rate=1e-2,
                             learning_decay_steps=10000)


def train_images(digits_data: Path) -> list[Path]:
    return sorted((digits_data / "data" / "train" / "images").glob("*.png"))


@pytest.fixture
def collection(digits_data, tmp_path) -> tuple[Path, list[str]]:
    """A nested folder of the training images plus an unreadable PNG and files that are not images;
    returns the folder and the image paths in the order tf-crnn reads them."""
    images = train_images(digits_data)
    root = tmp_path / "collection"
    layout = {"": images[:5], "a": images[5:12], "a/b": images[12:20], "c": images[20:30]}
    for folder, files in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(files):
            shutil.copy(image, root / folder / f"line_{i:02d}.png")
    (root / "a" / "b" / "broken.png").write_bytes(b"not a PNG at all")
    (root / "a" / "notes.txt").write_text("not an image", encoding="utf-8")
    (root / "c" / "._line_00.png").write_bytes(b"macOS companion")
    (root / ".hidden").mkdir()
    shutil.copy(images[0], root / ".hidden" / "x.png")
    # Each folder's images by name, then its subfolders by name, depth first.
    order = ([f"line_{i:02d}.png" for i in range(5)] + [f"a/line_{i:02d}.png" for i in range(7)]
             + ["a/b/broken.png"] + [f"a/b/line_{i:02d}.png" for i in range(8)]
             + [f"c/line_{i:02d}.png" for i in range(10)])
    return root, [os.path.join(str(root), *name.split("/")) for name in order]


def stdout_rows(result) -> dict[str, str]:
    return {path: text for path, text, _ in (line.split("\t") for line in result.stdout.splitlines())}


def test_folders_are_walked_in_sorted_order_and_csv_rows_give_their_images(collection, digits_data):
    root, expected = collection
    assert list(walk_images(root)) == expected
    csv = digits_data / "data" / "eval" / "labels.csv"
    rows = [str(digits_data / "data" / "eval" / line.split(";", 1)[0]) for line in csv.read_text().splitlines()]
    sources = gather([str(root), str(csv), "x.png"])
    assert sources.total is None  # a folder: not counted before it is walked
    assert list(sources.paths) == expected + [os.path.normpath(r) for r in rows] + ["x.png"]
    counted = gather([str(csv), "x.png", "y.png"])
    assert counted.total == len(rows) + 2 and len(list(counted.paths)) == counted.total


def test_an_unfinished_last_line_is_dropped_and_a_foreign_file_refused(tmp_path):
    out = tmp_path / "out.tsv"
    out.write_text("a.png\t12\t0.9000\nb.png\t3\t0.5000\nc.pn", encoding="utf-8")
    paths, repaired = written_paths(out)
    assert repaired and paths == {os.path.abspath("a.png"), os.path.abspath("b.png")}
    assert out.read_text(encoding="utf-8") == "a.png\t12\t0.9000\nb.png\t3\t0.5000\n"
    assert written_paths(out) == (paths, False)
    jsonl = tmp_path / "out.jsonl"
    jsonl.write_text('{"path": "a.png", "text": "1", "score": 0.5}\n{"path": "b.p', encoding="utf-8")
    assert written_paths(jsonl) == ({os.path.abspath("a.png")}, True)
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text("just some text\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"notes.jsonl:1: not a line of tf-crnn predict's JSON Lines output"):
        written_paths(foreign)


def test_predict_a_folder_a_csv_and_files_into_tsv_and_jsonl(export, collection, digits_data, tmp_path):
    root, folder_images = collection
    csv = digits_data / "data" / "eval" / "labels.csv"
    csv_images = [os.path.normpath(digits_data / "data" / "eval" / line.split(";", 1)[0])
                  for line in csv.read_text().splitlines()]
    files = [str(p) for p in train_images(digits_data)[40:43]]
    sources = [str(root), str(csv), *files]
    expected = folder_images + csv_images + files
    broken = os.path.join(str(root), "a", "b", "broken.png")

    plain = tf_crnn("predict", "--model", export, "--batch-size", "4", *sources)
    assert plain.returncode == 0, plain.stderr[-3000:]
    texts = stdout_rows(plain)
    assert list(texts) == [p for p in expected if p != broken]
    assert len(set(texts.values())) > 20  # the model reads: comparing the texts below means something
    assert f"tf-crnn predict: {broken}: " in plain.stderr

    tsv = tmp_path / "out.tsv"
    result = tf_crnn("predict", "--model", export, "--batch-size", "4", "--chunk-size", "7", "-o", str(tsv), *sources)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "" and f"tf-crnn predict: {broken}: " in result.stderr
    assert "predicting" in result.stderr  # the progress bar
    lines = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()]
    assert [fields[0] for fields in lines] == expected  # every image once, in input order
    rows = {fields[0]: fields for fields in lines}
    assert all(len(rows[p]) == 3 and rows[p][1] == texts[p] and 0 <= float(rows[p][2]) <= 1 for p in texts)
    assert rows[broken][1:3] == ["", ""] and "cannot decode image" in rows[broken][3]

    jsonl = tmp_path / "out.jsonl"
    strict = tf_crnn("predict", "--model", export, "--chunk-size", "5", "--strict", "--no-progress", "-o", str(jsonl),
                     *sources)
    assert strict.returncode == 1, strict.stderr[-3000:]  # --strict: an image could not be read; all were written
    assert "1 of" in strict.stderr and "predicting" not in strict.stderr
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [r["path"] for r in records] == expected
    for record in records:
        if record["path"] == broken:
            assert record["text"] == "" and record["score"] is None and "cannot decode image" in record["error"]
        else:
            assert set(record) == {"path", "text", "score"} and record["text"] == texts[record["path"]]

    again = tf_crnn("predict", "--model", export, "-o", str(jsonl), *sources)
    assert again.returncode == 2 and "out.jsonl exists: add --resume" in again.stderr
    done = tf_crnn("predict", "--model", export, "-o", str(jsonl), "--resume", *sources)
    assert done.returncode == 0 and f"all {len(expected)} image(s) are already in" in done.stderr
    assert [json.loads(line)["path"] for line in jsonl.read_text(encoding="utf-8").splitlines()] == expected


def test_resume_after_kill_9_writes_every_image_once(export, digits_data, tmp_path):
    images = train_images(digits_data)
    folder = tmp_path / "many"
    for part in range(30):  # 30 folders x 64 images (copies of the fixture's PNGs)
        (folder / f"{part:02d}").mkdir(parents=True)
        for i, image in enumerate(images):
            shutil.copy(image, folder / f"{part:02d}" / f"{i:03d}.png")
    expected = list(walk_images(folder))
    assert len(expected) == 30 * 64
    out = tmp_path / "out.tsv"
    command = [sys.executable, "-m", "tf_crnn.cli", "predict", "--model", export, "--chunk-size", "40",
               "--no-progress", "-o", str(out), str(folder)]

    def written() -> int:
        return out.read_bytes().count(b"\n") if out.exists() else 0

    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: written() >= 80 or process.poll() is not None, 300, "the first chunks", poll_s=0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = written()
    assert 0 < killed_at < len(expected), f"killed too late: {killed_at} lines"
    # A kill can fall between two writes or inside one; make sure the output also ends in a cut line, as the
    # latter leaves it, so the resume has to repair it.
    data = out.read_bytes()
    if data.endswith(b"\n"):
        out.write_bytes(data[:-5])

    resumed = tf_crnn("predict", "--model", export, "--chunk-size", "40", "-o", str(out), "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "dropped an unfinished last line" in resumed.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert all(len(line.split("\t")) == 3 and all(c.isdigit() for c in line.split("\t")[1]) for line in lines)
    assert [line.split("\t")[0] for line in lines] == expected  # each once, in input order


def test_predict_arguments_are_checked(tmp_path):
    result = tf_crnn("predict", "--model", "m", "--resume", "x.png", timeout=120)
    assert result.returncode == 2 and "--resume continues the file of -o/--output" in result.stderr
    nowhere = tmp_path / "nope" / "out.tsv"
    result = tf_crnn("predict", "--model", "m", "-o", str(nowhere), "x.png", timeout=120)
    assert result.returncode == 2 and f"{nowhere}: no folder {nowhere.parent} to write it in" in result.stderr
    out = tmp_path / "out.tsv"
    result = tf_crnn("predict", "--model", str(tmp_path / "m"), "-o", str(out), "x.png", timeout=120)
    assert result.returncode == 2 and "no SavedModel in" in result.stderr
    assert not out.exists()  # nothing transcribed, no empty file left behind


@pytest.mark.slow
def test_benchmark_script_runs_at_a_tiny_size(export, digits_data, tmp_path):
    """benchmarks/predict_collection.py at a tiny size, so it cannot rot (its figures come from full runs)."""
    speed, resume = tmp_path / "speed.json", tmp_path / "resume.json"
    script = [sys.executable, "benchmarks/predict_collection.py", "--export", export]
    result = subprocess.run(script + ["--images", "48", "--batch", "16", "--rounds", "1", "--data", str(tmp_path),
                                      "--json", str(speed)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(speed.read_text())
    assert len(figures["tf-crnn"]) == 2 and len(figures["plain"]) == 1 and all(
        v > 0 for v in figures["tf-crnn"] + figures["plain"])
    assert "ratio tf-crnn / plain" in result.stdout and "machine:" in result.stdout
    result = subprocess.run(script + ["--resume-check", str(digits_data / "data" / "train" / "labels.csv"),
                                      "--chunk-size", "4", "--json", str(resume)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads(resume.read_text())
    assert check["images"] == 64 and check["exit"] == 0 and check["every_image_once"]
