"""The check cache: a second check of the same files reads what the first found, a changed file is checked again,
two processes fill one cache at once, and a cache that cannot be used only costs a warning.

Real image files, a real SQLite file under ``$TF_CRNN_HOME``, real processes. The files get modification times
an hour back: the cache does not remember files modified just before they were read (``RACY_SECONDS``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, checkpoint_epochs, tiny_params, train_command, train_env, write_config
from PIL import Image

from tf_crnn import check_cache
from tf_crnn.alphabet import Alphabet
from tf_crnn.data import DataError, check_images, load_split, scan_samples
from tf_crnn.tracking.provenance import data_fingerprint

HOUR_NS = 3600 * 10**9
CACHE_LOGGER = "tf_crnn.check_cache"


def age(path: Path, hours: float = 1.0) -> None:
    """Set the file's access and modification times ``hours`` back."""
    then = time.time_ns() - int(hours * HOUR_NS)
    os.utime(path, ns=(then, then))


def write_image(path: Path, width: int, seed: int, blank: bool = False) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.full((32, width), 200, np.uint8) if blank else rng.integers(0, 256, (32, width), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    age(path)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh ``$TF_CRNN_HOME`` with the cache on."""
    monkeypatch.setenv("TF_CRNN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(check_cache.ENV_OFF, raising=False)
    return tmp_path / "home"


@pytest.fixture
def image_set(tmp_path) -> Path:
    """``set/labels.csv``: 12 plain PNGs (TensorFlow decodes them), one GIF (Pillow converts it), one blank
    PNG and one 400 px wide PNG (squeezed under a small ``max_width``)."""
    folder = tmp_path / "set"
    folder.mkdir()
    names = []
    for i in range(12):
        write_image(folder / f"{i:02d}.png", 40 + i, seed=i)
        names.append(f"{i:02d}.png")
    Image.open(folder / "00.png").convert("P").save(folder / "palette.gif")
    age(folder / "palette.gif")
    write_image(folder / "blank.png", 48, seed=0, blank=True)
    write_image(folder / "wide.png", 400, seed=99)
    names += ["palette.gif", "blank.png", "wide.png"]
    (folder / "labels.csv").write_text("".join(f"{n};|1|2|\n" for n in names), encoding="utf-8")
    return folder


def paths_of(folder: Path) -> list[str]:
    return [str(folder / line.split(";")[0]) for line in (folder / "labels.csv").read_text().splitlines()]


def since(before: dict[str, int]) -> dict[str, int]:
    """The look-ups counted since ``before`` (a :func:`check_cache.counts`), without zeros."""
    now = check_cache.counts()
    changed = {k: now.get(k, 0) - before.get(k, 0) for k in now}
    return {k: v for k, v in changed.items() if v}


def uncached_check(paths: list[str], monkeypatch) -> list:
    """What :func:`check_images` finds with the cache turned off."""
    with monkeypatch.context() as m:
        m.setenv(check_cache.ENV_OFF, "1")
        return check_images(paths, 1, progress=False)


def test_a_second_load_reads_the_cache_and_derives_the_verdicts_anew(home, image_set, monkeypatch):
    csv = [str(image_set / "labels.csv")]
    params = tiny_params(image_set, max_width=512)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    before = check_cache.counts()
    first = load_split(csv, params, alphabet, "train", progress=False)
    assert since(before) == {"images miss": 15}
    assert (home / "cache" / "checks.sqlite").is_file()

    before = check_cache.counts()
    second = load_split(csv, params, alphabet, "train", progress=False)
    assert since(before) == {"images hit": 15}  # nothing decoded: every image known
    assert second == first
    assert [e.direct for e in second].count(False) == 1  # the GIF, converted by Pillow

    # What the facts give is derived per run: the same cached facts, another max_width, another verdict.
    samples = [e.sample for e in first]
    wide = scan_samples(samples, params, alphabet, progress=False)
    narrow = scan_samples(samples, tiny_params(image_set, max_width=128), alphabet, progress=False)
    assert wide.degenerate_counts == {"blank": 1}
    assert narrow.degenerate_counts == {"blank": 1, "squeezed": 1}
    assert [e.width for e in narrow.entries if e.sample.image_path.endswith("wide.png")] == [128]
    assert check_images(paths_of(image_set), 1, progress=False) == uncached_check(paths_of(image_set), monkeypatch)


def test_a_changed_file_is_checked_again_and_only_it(home, image_set, monkeypatch):
    paths = paths_of(image_set)
    check_images(paths, 1, progress=False)

    age(image_set / "03.png", hours=2)  # touched: same bytes, another modification time
    write_image(image_set / "04.png", 90, seed=4)  # rewritten: another size
    good = image_set / "05.png"
    size = good.stat().st_size
    good.write_bytes(good.read_bytes()[:size // 2] + b"\0" * (size - size // 2))  # corrupted in place, same size
    age(good, hours=3)

    before = check_cache.counts()
    found = dict(zip(paths, check_images(paths, 1, progress=False)))
    assert since(before) == {"images hit": 12, "images miss": 3}
    assert found[str(image_set / "04.png")].width == 90
    assert found[str(good)].startswith("cannot decode image")
    assert list(found.values()) == uncached_check(paths, monkeypatch)

    params = tiny_params(image_set, max_width=512)
    with pytest.raises(DataError, match=r"labels.csv:6: .*05.png: cannot decode image"):
        load_split([str(image_set / "labels.csv")], params, Alphabet.from_file(params.lookup_alphabet_file),
                   "train", progress=False)

    # The unusable image is not remembered; the others are known again in their new state.
    before = check_cache.counts()
    check_images(paths, 1, progress=False)
    assert since(before) == {"images hit": 14, "images miss": 1}


def test_a_file_modified_just_before_the_check_is_not_remembered(home, image_set):
    paths = paths_of(image_set)
    fresh = image_set / "07.png"
    os.utime(fresh)  # now: a rewrite within the file system's timestamp granularity could keep this key
    check_images(paths, 1, progress=False)
    before = check_cache.counts()
    check_images(paths, 1, progress=False)
    assert since(before) == {"images hit": 14, "images miss": 1}


def test_channels_are_part_of_the_key(home, image_set):
    paths = paths_of(image_set)
    check_images(paths, 1, progress=False)
    before = check_cache.counts()
    rgb = check_images(paths, 3, progress=False)
    assert since(before) == {"images miss": 15}
    assert all(not isinstance(info, str) for info in rgb)


def test_the_content_fingerprint_is_the_same_with_and_without_the_cache(home, image_set, monkeypatch):
    paths = paths_of(image_set)
    with monkeypatch.context() as m:
        m.setenv(check_cache.ENV_OFF, "1")
        without = data_fingerprint(paths, "content")
    assert not (home / "cache").exists()  # turned off: nothing written

    before = check_cache.counts()
    assert data_fingerprint(paths, "content") == without
    assert since(before) == {"md5 miss": 15}
    before = check_cache.counts()
    assert data_fingerprint(list(reversed(paths)), "content") == without
    assert since(before) == {"md5 hit": 15}

    age(image_set / "02.png", hours=2)  # touched: the content, hence the fingerprint, is the same
    assert data_fingerprint(paths, "content") == without
    write_image(image_set / "02.png", 42, seed=1000)  # other pixels
    changed = data_fingerprint(paths, "content")
    assert changed != without
    with monkeypatch.context() as m:
        m.setenv(check_cache.ENV_OFF, "1")
        assert data_fingerprint(paths, "content") == changed


WORKER = """
import json, sys, time
from pathlib import Path

from tf_crnn import check_cache
from tf_crnn.data import check_images
from tf_crnn.tracking.provenance import data_fingerprint

check_cache.WRITE_CHUNK = 2  # many short write transactions, so the two processes' writes interleave
folder, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
paths = json.loads((folder / "paths.json").read_text())
if me == "b":
    paths.reverse()
(folder / f"ready-{me}").touch()
deadline = time.time() + 300
while not (folder / f"ready-{other}").exists() and time.time() < deadline:
    time.sleep(0.01)
infos = dict(zip(paths, check_images(paths, 1, progress=False)))
print(json.dumps({"infos": {p: list(i) for p, i in infos.items()},
                  "fingerprint": data_fingerprint(paths, "content"), "counts": check_cache.counts()}))
"""


def test_two_processes_fill_one_cache_at_once(home, image_set, tmp_path, monkeypatch):
    for i in range(12, 60):  # enough files for the two writers to overlap
        write_image(image_set / f"{i:02d}.png", 30 + i, seed=i)
    paths = sorted(str(p) for p in image_set.glob("*.png"))
    (tmp_path / "paths.json").write_text(json.dumps(paths))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = [subprocess.Popen([sys.executable, str(script), str(tmp_path), me, other], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for me, other in (("a", "b"), ("b", "a"))]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        assert "check cache" not in err, err  # no warning: the cache was usable to both
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    expected = {p: list(i) for p, i in zip(paths, uncached_check(paths, monkeypatch))}
    with monkeypatch.context() as m:
        m.setenv(check_cache.ENV_OFF, "1")
        fingerprint = data_fingerprint(paths, "content")
    for result in results:
        assert result["infos"] == expected
        assert result["fingerprint"] == fingerprint
        assert result["counts"]["images hit"] + result["counts"]["images miss"] == len(paths)

    with sqlite3.connect(home / "cache" / "checks.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = {path: (size, mtime) for path, size, mtime in db.execute("SELECT path, size, mtime_ns FROM images_v1")}
        digests = dict(db.execute("SELECT path, md5 FROM md5_v1"))
    assert rows == {p: (os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths}
    assert set(digests) == set(paths)
    before = check_cache.counts()
    check_images(paths, 1, progress=False)
    data_fingerprint(paths, "content")
    assert since(before) == {"images hit": len(paths), "md5 hit": len(paths)}


def damage_corrupt(home: Path) -> None:
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "checks.sqlite").write_bytes(b"this is not an SQLite database\n" * 100)


def damage_home_is_a_file(home: Path) -> None:
    home.write_text("a file where the home folder should be\n")


def damage_cache_is_a_folder(home: Path) -> None:
    (home / "cache" / "checks.sqlite").mkdir(parents=True)


@pytest.mark.parametrize("damage", [damage_corrupt, damage_home_is_a_file, damage_cache_is_a_folder])
def test_an_unusable_cache_warns_once_and_the_checks_go_on(home, image_set, caplog, monkeypatch, damage):
    damage(home)
    paths = paths_of(image_set)
    expected = uncached_check(paths, monkeypatch)
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        assert check_images(paths, 1, progress=False) == expected
        assert check_images(paths, 1, progress=False) == expected
        data_fingerprint(paths, "content")
    warnings = [r.getMessage() for r in caplog.records if r.name == CACHE_LOGGER]
    assert len(warnings) == 1 and "cannot be used" in warnings[0] and check_cache.ENV_OFF in warnings[0]


@contextlib.contextmanager
def read_only(*paths: Path):
    """Make files and folders read-only for the block: ``chmod``, or for root (who writes anyway) ``chattr +i``."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *map(str, paths)]).returncode:
        pytest.skip("root without chattr +i on this file system: nothing is read-only to root")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_a_read_only_cache_warns_and_the_checks_go_on(home, image_set, caplog, monkeypatch):
    paths = paths_of(image_set)
    expected = uncached_check(paths, monkeypatch)
    cache = home / "cache" / "checks.sqlite"
    cache.parent.mkdir(parents=True)
    sqlite3.connect(cache).close()  # an empty database: the cache's tables cannot be created in it
    with read_only(cache, cache.parent), caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        assert check_images(paths, 1, progress=False) == expected
        assert data_fingerprint(paths, "content") is not None
    warnings = [r.getMessage() for r in caplog.records if r.name == CACHE_LOGGER]
    assert len(warnings) == 1 and "cannot be used" in warnings[0]


def test_a_training_with_a_corrupt_cache_warns_and_trains(digits_data, tmp_path):
    home = tmp_path / "home"
    damage_corrupt(home)
    config = write_config(tmp_path, digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1)
    done = subprocess.run(train_command(config), cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=train_env(TF_CRNN_HOME=str(home), TF_CRNN_NO_OBSERVER="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("the check cache") == 1 and "cannot be used" in output
    assert checkpoint_epochs(tmp_path / "out") == {1}


def test_file_stats_keep_the_first_key_of_a_file_for_the_run(tmp_path):
    """A run's FileStats stat a file once: its check and its fingerprint use the key it had when first seen; the
    next run's FileStats see the file as it is then."""
    image = tmp_path / "a.png"
    image.write_bytes(b"one")
    stats = check_cache.FileStats()
    first = stats.keys([str(image), str(tmp_path / "missing.png")])
    assert first[0].size == 3 and first[1] is None
    image.write_bytes(b"three")
    assert stats.keys([str(image)]) == [first[0]]  # the same run: the key it was checked under
    assert check_cache.FileStats().keys([str(image)])[0].size == 5  # a later run: the file as it is now


def test_a_few_files_of_a_large_cache_are_looked_up_by_path_and_most_of_it_in_one_pass(home, image_set,
                                                                                       monkeypatch):
    """Two ways to the same facts: indexed look-ups for a few files of a cache that holds many (fewer than
    1/SCAN_SHARE of its rows), one pass over the rows for most of them; either way a changed file is a miss."""
    paths = paths_of(image_set)
    check_images(paths, 1, progress=False)
    data_fingerprint(paths, "content")
    few = paths[:3]
    assert len(few) * check_cache.SCAN_SHARE < len(paths)
    for asked, changed in ((few, few[2]), (paths, paths[5])):
        with open(changed, "ab") as f:  # one more byte: another size, another key
            f.write(b"\0")
        age(Path(changed))
        expected = uncached_check(asked, monkeypatch)
        before = check_cache.counts()
        infos = check_images(asked, 1, progress=False)
        data_fingerprint(asked, "content")
        hits = len(asked) - 1
        assert since(before) == {"images hit": hits, "images miss": 1, "md5 hit": hits, "md5 miss": 1}, changed
        assert infos == expected
