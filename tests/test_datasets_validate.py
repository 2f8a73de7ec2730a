"""validate(): decode errors, CTC feasibility, unknown symbols, duplicates, histograms.

Imports tf_crnn.data (TensorFlow) once: a few seconds.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil

import pytest
from PIL import Image

from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import write_csv

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow not installed")


def _dataset(tmp_path):
    good = tmp_path / "good.png"
    Image.new("L", (200, 32), 255).save(good)
    narrow = tmp_path / "narrow.png"
    Image.new("L", (20, 32), 255).save(narrow)  # resized to min_width 100 -> 25 time steps
    copy = tmp_path / "copy.png"
    shutil.copy(good, copy)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [
        (good, tuple("hello")),
        (narrow, tuple("a" * 30)),          # too long for 25 steps
        (narrow, tuple("ab" * 6)),          # fits: 12 <= 25
        (narrow, tuple("aa" * 7)),          # 14 symbols, 13 repeats: 27 > 25 steps
        (broken, tuple("abc")),
        (copy, tuple("hallo")),             # same bytes as good.png
        (good, tuple("hello")),             # same path twice
        (tmp_path / "missing.png", tuple("abc")),
        (good, tuple("hé")),                # é not in the alphabet
    ]
    write_csv([(str(p), s) for p, s in rows], tmp_path / "data.csv")
    Alphabet.from_symbols("abcdehlo").save(tmp_path / "table.json")
    return tmp_path / "data.csv", tmp_path / "table.json"


def test_validate_finds_every_problem(tmp_path):
    from tf_crnn.datasets.validate import validate

    csv_path, table = _dataset(tmp_path)
    report = validate([csv_path], table, report_dir=tmp_path / "report", progress=False)
    assert report.rows == 9
    assert list(report.unknown) == ["é"] and report.unknown["é"] == [f"{csv_path}:9"]
    assert len(report.bad_images) == 2
    assert any("broken.png" in b and "data.csv:5" in b for b in report.bad_images)
    assert any("missing.png" in b for b in report.bad_images)
    assert len(report.too_long) == 2
    assert any("data.csv:2" in t for t in report.too_long) and any("data.csv:4" in t for t in report.too_long)
    assert report.duplicate_paths[str(tmp_path / "good.png")] == [f"{csv_path}:{i}" for i in (1, 7, 9)]
    assert report.duplicate_paths[str(tmp_path / "narrow.png")] == [f"{csv_path}:{i}" for i in (2, 3, 4)]
    assert len(report.duplicate_images) == 1 and "copy.png" in " ".join(report.duplicate_images[0])
    # good.png (lines 1, 7, 9) and narrow.png (2, 3, 4) are each listed with different labels: an error apiece.
    assert [c.split(": ", 1)[0] for c in report.conflicting_labels] == [str(tmp_path / "good.png"),
                                                                        str(tmp_path / "narrow.png")]
    assert f"{csv_path}:9 'hé'" in report.conflicting_labels[0]
    assert not report.ok and report.errors == 7
    assert sorted(p.rsplit("/", 1)[1] for p in report.plots) == ["label_lengths.png", "widths.png"]
    for p in report.plots:
        with Image.open(p) as im:
            assert im.format == "PNG"
    text = report.format()
    assert "FAILED: 7 error(s)" in text and "U+00E9" in text
    assert "ERROR 2 image(s) listed with different labels" in text


def test_validate_cli_exit_codes_and_config(tmp_path, capsys):
    from tf_crnn.cli import datasets as cli

    def run(argv):
        parser = argparse.ArgumentParser()
        cli.register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        return args.func(args)

    good = tmp_path / "w.png"
    Image.new("L", (64, 32), 255).save(good)
    write_csv([(str(good), tuple("abcabcabcabcabcabcabcab"))], tmp_path / "ok.csv")  # 23 symbols
    Alphabet.from_symbols("abc").save(tmp_path / "t.json")
    assert run(["validate", str(tmp_path / "ok.csv"), "--alphabet", str(tmp_path / "t.json"), "--no-progress"]) == 0
    assert "OK" in capsys.readouterr().out
    assert (tmp_path / "ok.validate" / "widths.png").is_file()
    # A config with a smaller min width makes the same label infeasible: 64 px -> 16 steps.
    (tmp_path / "c.json").write_text(json.dumps({"input_shape": [32, 32]}), encoding="utf-8")
    code = run(["validate", str(tmp_path / "ok.csv"), "--alphabet", str(tmp_path / "t.json"),
                "--config", str(tmp_path / "c.json"), "--no-progress"])
    assert code == 1
    assert "too long" in capsys.readouterr().out
