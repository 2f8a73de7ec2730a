"""Synthetic generators: determinism, CSV/alphabet readable, images decode."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import read_csv
from tf_crnn.datasets import synthetic
from tf_crnn.datasets.text_spec import TextSpec


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "images").iterdir())}


def test_numbers_csv_alphabet_and_images(tmp_path):
    csv_path = synthetic.generate_numbers(tmp_path, 12, seed=3, min_length=2, max_length=5,
                                          height=32, workers=1, progress=False)
    assert csv_path == str(tmp_path / "labels.csv")
    samples = read_csv(csv_path)
    assert len(samples) == 12
    alphabet = Alphabet.from_file(tmp_path / "alphabet.json")
    assert set(alphabet.lookup) == set("0123456789")
    assert sorted(alphabet.lookup.values()) == list(range(1, 11))
    alphabet.check(samples)
    for s in samples:
        assert 2 <= len(s.symbols) <= 5 and s.text.isdigit()
        with Image.open(s.image_path) as im:
            im.load()
            assert im.mode == "L"
            assert 32 <= im.height <= 48
            assert im.width > im.height  # a few digits are wider than tall
    # paths in the CSV are relative (portable data set)
    first = (tmp_path / "labels.csv").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("images/")


def test_numbers_deterministic_across_worker_counts(tmp_path):
    a = synthetic.generate_numbers(tmp_path / "a", 10, seed=7, workers=1, progress=False)
    b = synthetic.generate_numbers(tmp_path / "b", 10, seed=7, workers=2, progress=False)
    assert Path(a).read_bytes() == Path(b).read_bytes()
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    synthetic.generate_numbers(tmp_path / "c", 10, seed=8, workers=2, progress=False)
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_seeds_do_not_overlap_shifted(tmp_path):
    # seed 0 image 1 must not equal seed 1 image 0 (a naive seed + index would).
    synthetic.generate_numbers(tmp_path / "s0", 2, seed=0, workers=1, progress=False)
    synthetic.generate_numbers(tmp_path / "s1", 2, seed=1, workers=1, progress=False)
    assert _files(tmp_path / "s0")["000001.png"] != _files(tmp_path / "s1")["000000.png"]


def test_numbers_geometric_distortion_options(tmp_path):
    default = synthetic.generate_numbers(tmp_path / "d", 4, seed=3, workers=1, progress=False)
    synthetic.generate_numbers(tmp_path / "s", 4, seed=3, workers=1, progress=False, max_rotation=3.0,
                                      max_perspective=0.05)
    strong = synthetic.generate_numbers(tmp_path / "x", 4, seed=3, workers=1, progress=False, max_rotation=15.0,
                                        max_perspective=0.2)
    assert _files(tmp_path / "d") == _files(tmp_path / "s")  # the defaults are today's
    assert _files(tmp_path / "d") != _files(tmp_path / "x")
    assert Path(default).read_text().split("|")[1:] == Path(strong).read_text().split("|")[1:]  # same labels
    with pytest.raises(ValueError, match="max_rotation"):
        synthetic.generate_numbers(tmp_path / "bad", 3, max_rotation=-1.0, progress=False)


def test_numbers_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="min_length"):
        synthetic.generate_numbers(tmp_path, 3, min_length=5, max_length=2)
    with pytest.raises(ValueError, match="style"):
        synthetic.generate_numbers(tmp_path, 3, style="cursive")
    with pytest.raises(ValueError, match="n must be"):
        synthetic.generate_numbers(tmp_path, 0, progress=False)


def test_text_with_word_file_unicode_and_colour(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("Straße\nnaïve café\nbad|word x;y\nZürich\n", encoding="utf-8")
    csv_path = synthetic.generate_text(tmp_path / "out", 8, TextSpec(words=words, max_words=2, color=True), seed=1,
                                       workers=2, progress=False)
    samples = read_csv(csv_path)
    assert len(samples) == 8
    # "bad|word" cannot be a label ('|' splits symbols); "x;y" can (a row is split at its first ';').
    vocabulary = {"Straße", "naïve", "café", "Zürich", "x;y"}
    alphabet = Alphabet.from_file(tmp_path / "out" / "alphabet.json")
    alphabet.check(samples)
    for s in samples:
        for word in s.text.split(" "):
            assert word.lower() in {v.lower() for v in vocabulary} or word.upper() in {v.upper() for v in vocabulary}
        with Image.open(s.image_path) as im:
            im.load()
            assert im.mode == "RGB"


def test_text_deterministic(tmp_path):
    a = synthetic.generate_text(tmp_path / "a", 6, seed=2, workers=1, progress=False)
    b = synthetic.generate_text(tmp_path / "b", 6, seed=2, workers=2, progress=False)
    assert Path(a).read_bytes() == Path(b).read_bytes()
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_text_spec_refuses_bad_values_when_made():
    for kwargs, message in (({"min_words": 3, "max_words": 2}, "min_words <= max_words"),
                            ({"lines": True, "max_words": 2}, "one whole line"),
                            ({"case": "upper"}, "case must be one of"),
                            ({"binarize": 1.5}, "binarize must be in 0..1"),
                            ({"blur": -1.0}, "must be >= 0"),
                            ({"max_spacing": -0.1}, "max_spacing >= -0.04"),
                            ({"height": 0}, "height must be >= 1")):
        with pytest.raises(ValueError, match=message):
            TextSpec(**kwargs)
    spec = TextSpec(max_words=3)
    with pytest.raises(AttributeError):
        spec.max_words = 1  # frozen: a spec handed to generate_text cannot change under it


def test_text_fonts_lacking_glyphs_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="can draw"):
        synthetic.generate_text(tmp_path, 2, TextSpec(words=["汉字"]), progress=False)


def test_text_font_folder(tmp_path):
    fonts = synthetic.render.matplotlib_fonts()[:2]
    folder = tmp_path / "fonts"
    folder.mkdir()
    for f in fonts:
        (folder / Path(f).name).write_bytes(Path(f).read_bytes())
    csv_path = synthetic.generate_text(tmp_path / "out", 3, TextSpec(fonts=folder), workers=1, progress=False)
    assert len(read_csv(csv_path)) == 3
    with pytest.raises(FileNotFoundError, match="font folder not found"):
        synthetic.generate_text(tmp_path / "x", 3, TextSpec(fonts=tmp_path / "nope"), progress=False)


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed (optional)")
def test_handwritten_numbers(tmp_path):
    a = synthetic.generate_numbers(tmp_path / "a", 6, style="handwritten", seed=4, workers=2, progress=False)
    synthetic.generate_numbers(tmp_path / "b", 6, style="handwritten", seed=4, workers=1, progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    for s in read_csv(a):
        with Image.open(s.image_path) as im:
            im.load()
            assert im.mode == "L" and im.height >= 32


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is not None, reason="scikit-learn is installed")
def test_handwritten_without_sklearn_says_what_to_install(tmp_path):
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        synthetic.generate_numbers(tmp_path, 2, style="handwritten", progress=False)


def test_text_words_no_font_can_draw_are_left_out_with_warning(tmp_path):
    # DejaVu has no U+0364 (combining small e): rendering it would draw a box under a wrong label.
    with pytest.warns(UserWarning, match="1 of 2 words left out"):
        csv_path = synthetic.generate_text(tmp_path, 4, TextSpec(words=["gut", "Ba\u0364der"]), workers=1,
                                           progress=False)
    assert {s.text.lower() for s in read_csv(csv_path)} == {"gut"}
    assert "\u0364" not in "".join(Alphabet.from_file(tmp_path / "alphabet.json").lookup)


def test_generation_in_a_training_process_ends_its_workers_quietly(tmp_path):
    # The quick start generates its data inside train.py, under tf-crnn's SIGTERM / Ctrl-C handlers; the pool's
    # workers are forked from it and terminated with SIGTERM when the generation ends.
    import subprocess
    import sys

    script = ("import sys\nfrom tf_crnn import interrupts\nfrom tf_crnn.datasets import synthetic\n"
              "with interrupts.stop_on_signals():\n"
              "    synthetic.generate_numbers(sys.argv[1], 40, seed=1, workers=2, progress=False)\n"
              "print('done')\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "g")], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Traceback" not in result.stderr and "SIGTERM" not in result.stderr, result.stderr
    assert len(read_csv(str(tmp_path / "g" / "labels.csv"))) == 40
