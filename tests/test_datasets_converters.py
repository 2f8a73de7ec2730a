"""prepare(): every format on fixtures written in its original layout, plus the awkward cases."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import read_csv
from tf_crnn.datasets.converters import ConversionError, clean_label, parse_group_split, prepare


def _image(path: Path, width: int = 40, height: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (width, height), 200).save(path)
    return path


def _texts(csv_path) -> list[str]:
    return [s.text for s in read_csv(csv_path)]


# --------------------------------------------------------------------------- gt-pairs

def _gt_tree(root: Path) -> None:
    """Three 'years', .gt.txt and .txt, a combining character, a '|' line, a README."""
    _image(root / "1800" / "a.png")
    (root / "1800" / "a.txt").write_text("Die Sonne aͤ\n", encoding="utf-8")
    _image(root / "1801" / "b.bin.png")
    (root / "1801" / "b.gt.txt").write_text("ſchoͤn, gut", encoding="utf-8")
    _image(root / "1802" / "c.png")
    (root / "1802" / "c.txt").write_text("links | rechts", encoding="utf-8")
    _image(root / "1802" / "d.tif")
    (root / "1802" / "d.txt").write_text("zwei  Leer", encoding="utf-8")
    _image(root / "1803" / "e.png")
    (root / "1803" / "e.txt").write_text("weg", encoding="utf-8")
    (root / "README.txt").write_text("not ground truth", encoding="utf-8")


def test_gt_pairs_grapheme_split_and_pipe_skipped(tmp_path):
    _gt_tree(tmp_path / "gt")
    summary = prepare("gt-pairs", tmp_path / "gt", tmp_path / "out" / "all.csv", progress=False)
    assert summary.rows_written == 4
    texts = _texts(tmp_path / "out" / "all.csv")
    assert "Die Sonne aͤ" in texts and "ſchoͤn, gut" in texts and "zwei  Leer" in texts
    samples = read_csv(tmp_path / "out" / "all.csv")
    assert ("a" + "\u0364") in samples[0].symbols  # one symbol: base + combining mark
    assert len(summary.skipped) == 1
    assert "c.txt" in summary.skipped[0].origin and "'|'" in summary.skipped[0].reason
    alphabet = Alphabet.from_file(tmp_path / "out" / "all.alphabet.json")
    assert len(alphabet) == summary.alphabet_size and "aͤ" in alphabet and " " in alphabet
    counts = json.loads((tmp_path / "out" / "all.alphabet.counts.json").read_text(encoding="utf-8"))
    assert counts[" "] == 5
    # relative image paths that resolve
    assert all(Path(s.image_path).is_file() for s in samples)
    assert not (tmp_path / "out" / "all.csv").read_text(encoding="utf-8").startswith("/")


def test_gt_pairs_codepoint_split_and_nfd(tmp_path):
    _gt_tree(tmp_path / "gt")
    prepare("gt-pairs", tmp_path / "gt", tmp_path / "cp.csv", split="codepoint", progress=False)
    symbols = read_csv(tmp_path / "cp.csv")[0].symbols
    assert "\u0364" in symbols and "a" in symbols
    prepare("gt-pairs", tmp_path / "gt", tmp_path / "nfd.csv", normalization="NFD", casefold=True, progress=False)
    assert "die sonne aͤ" in _texts(tmp_path / "nfd.csv")


def test_gt_pairs_group_split_by_year_modulo(tmp_path):
    _gt_tree(tmp_path / "gt")
    summary = prepare("gt-pairs", tmp_path / "gt", tmp_path / "out" / "fraktur.csv", group_by="parent",
                      split_by_group="train=0,1 eval=2 mod=5", progress=False)
    assert set(summary.outputs) == {"train", "eval"}
    assert _texts(tmp_path / "out" / "fraktur.train.csv") == ["Die Sonne aͤ", "ſchoͤn, gut"]
    assert _texts(tmp_path / "out" / "fraktur.eval.csv") == ["zwei  Leer"]
    assert summary.not_selected == {"1803": 1}
    assert not (tmp_path / "out" / "fraktur.csv").exists()
    assert (tmp_path / "out" / "fraktur.alphabet.json").is_file()


def test_gt_pairs_errors_name_the_file_and_write_nothing(tmp_path):
    root = tmp_path / "gt"
    _gt_tree(root)
    (root / "1803" / "orphan.gt.txt").write_text("kein Bild", encoding="utf-8")
    _image(root / "1803" / "empty.png")
    (root / "1803" / "empty.txt").write_text("  \n", encoding="utf-8")
    _image(root / "1803" / "latin1.png")
    (root / "1803" / "latin1.txt").write_bytes("Stra\xdfe".encode("latin-1"))
    _image(root / "1803" / "two.png")
    (root / "1803" / "two.txt").write_text("eins\nzwei\n", encoding="utf-8")
    out = tmp_path / "out" / "x.csv"
    with pytest.raises(ConversionError) as info:
        prepare("gt-pairs", root, out, progress=False)
    message = str(info.value)
    assert "orphan.gt.txt" in message and "no image" in message
    assert "empty.txt:1" in message and "empty label" in message
    assert "latin1.txt:1" in message and "UTF-8" in message
    assert "two.txt" in message and "one line" in message
    assert "nothing was written" in message
    assert not out.exists() and not out.with_name("x.alphabet.json").exists()
    summary = prepare("gt-pairs", root, out, on_error="skip", progress=False)
    assert summary.rows_written == 4 and len(summary.skipped) == 5


# --------------------------------------------------------------------------- iiit5k

def _save_iiit5k(path: Path, key: str, names, labels, label_field="chars"):
    table = np.empty(len(names), dtype=[("ImgName", object), (label_field, object)])
    for i, (name, label) in enumerate(zip(names, labels)):
        table[i] = (name, label)
    scipy.io.savemat(path, {key: table})


def test_iiit5k_charbound_and_groundtruth_variants(tmp_path):
    for name in ("train/1_1.png", "train/2_1.png", "test/3_1.png"):
        _image(tmp_path / "iiit" / name)
    _save_iiit5k(tmp_path / "iiit" / "trainCharBound.mat", "trainCharBound",
                 ["train/1_1.png", "train/2_1.png"], ["You", "HOUSE"])
    _save_iiit5k(tmp_path / "iiit" / "testdata.mat", "testdata", ["test/3_1.png"], ["2012"], "GroundTruth")
    summary = prepare("iiit5k", tmp_path / "iiit", tmp_path / "out" / "iiit5k.csv", group_by="source",
                      split_by_group="each", progress=False)
    assert _texts(tmp_path / "out" / "iiit5k.train.csv") == ["You", "HOUSE"]
    assert _texts(tmp_path / "out" / "iiit5k.test.csv") == ["2012"]
    assert summary.alphabet_size == len(set("YouHOUSE2012"))
    single = prepare("iiit5k", tmp_path / "iiit" / "trainCharBound.mat", tmp_path / "one.csv",
                     casefold=True, progress=False)
    assert single.rows_written == 2 and _texts(tmp_path / "one.csv") == ["you", "house"]


def test_iiit5k_missing_image_and_bad_key(tmp_path):
    _save_iiit5k(tmp_path / "trainCharBound.mat", "trainCharBound", ["train/missing.png"], ["word"])
    with pytest.raises(ConversionError, match=r"trainCharBound.mat: entry 1 .*image not found"):
        prepare("iiit5k", tmp_path / "trainCharBound.mat", tmp_path / "o.csv", progress=False)
    scipy.io.savemat(tmp_path / "other.mat", {"something": np.zeros(3)})
    with pytest.raises(ValueError, match="other.mat: none of the IIIT5K keys"):
        prepare("iiit5k", tmp_path / "other.mat", tmp_path / "o.csv", progress=False)


# --------------------------------------------------------------------------- icdar

def test_icdar_bom_escaped_quotes_and_commas(tmp_path):
    root = tmp_path / "icdar"
    for i in range(1, 5):
        _image(root / f"word_{i}.png")
    gt = root / "gt.txt"
    gt.write_bytes("\ufeff".encode("utf-8") + (
        'word_1.png, "Tiredness"\r\n'
        'word_2.png, "\\"Quoted\\""\r\n'
        'word_3.png, "a,b, c"\r\n'
        'word_4.png, "Café"\r\n').encode("utf-8"))
    summary = prepare("icdar", gt, tmp_path / "icdar.csv", progress=False)
    assert summary.rows_written == 4
    assert _texts(tmp_path / "icdar.csv") == ["Tiredness", '"Quoted"', "a,b, c", "Café"]
    assert Path(read_csv(tmp_path / "icdar.csv")[0].image_path).name == "word_1.png"
    # a folder with one gt file works too
    assert prepare("icdar", root, tmp_path / "icdar2.csv", progress=False).rows_written == 4


def test_icdar_malformed_line_named(tmp_path):
    _image(tmp_path / "word_1.png")
    gt = tmp_path / "gt.txt"
    gt.write_text('word_1.png, "ok"\nword_2.png Tiredness\n', encoding="utf-8")
    with pytest.raises(ConversionError, match=r"gt.txt:2: expected"):
        prepare("icdar", gt, tmp_path / "o.csv", progress=False)


# --------------------------------------------------------------------------- mjsynth

def test_mjsynth_label_from_file_name(tmp_path):
    root = tmp_path / "mnt" / "ramdisk" / "max" / "90kDICT32px"
    _image(root / "1" / "2" / "3_Paintbrushes_55044.jpg")
    _image(root / "1" / "2" / "4_snake_case_word_7.jpg")
    annotation = root / "annotation_train.txt"
    annotation.write_text("./1/2/3_Paintbrushes_55044.jpg 55044\n./1/2/4_snake_case_word_7.jpg 7\n",
                          encoding="utf-8")
    prepare("mjsynth", annotation, tmp_path / "mj.csv", progress=False)
    assert _texts(tmp_path / "mj.csv") == ["Paintbrushes", "snake_case_word"]
    annotation.write_text("./1/2/nounderscore.jpg 1\n", encoding="utf-8")
    with pytest.raises(ConversionError, match=r"annotation_train.txt:1: file name"):
        prepare("mjsynth", annotation, tmp_path / "mj.csv", progress=False)


# --------------------------------------------------------------------------- tsv

def test_tsv_tab_and_space_with_spaces_in_labels(tmp_path):
    _image(tmp_path / "img" / "a.png")
    _image(tmp_path / "img" / "b.png")
    _image(tmp_path / "img" / "ü ß.png")
    annotation = tmp_path / "labels.tsv"
    annotation.write_text("img/a.png\thello world\nimg/b.png two words here\nimg/ü ß.png\tUmlaut Ü\n\n",
                          encoding="utf-8")
    prepare("tsv", annotation, tmp_path / "out" / "t.csv", progress=False)
    assert _texts(tmp_path / "out" / "t.csv") == ["hello world", "two words here", "Umlaut Ü"]
    assert Path(read_csv(tmp_path / "out" / "t.csv")[2].image_path).name == "ü ß.png"


def test_tsv_undecodable_and_empty_label(tmp_path):
    _image(tmp_path / "a.png")
    annotation = tmp_path / "labels.tsv"
    annotation.write_bytes(b"a.png\tok\na.png\t\n")
    with pytest.raises(ConversionError, match=r"labels.tsv:2: empty label"):
        prepare("tsv", annotation, tmp_path / "o.csv", progress=False)
    annotation.write_bytes(b"a.png\tok\na.png\t\xe9t\xe9\n")
    with pytest.raises(ConversionError, match=r"labels.tsv:2: not valid UTF-8"):
        prepare("tsv", annotation, tmp_path / "o.csv", progress=False)
    assert not (tmp_path / "o.csv").exists()


# --------------------------------------------------------------------------- filename

def test_filename_utf8_names_regex_and_ratio_split(tmp_path):
    root = tmp_path / "plates"
    names = ["皖A2T582", "川JK0707", "京PL3N67", "川X90621"]
    for n in names:
        _image(root / f"{n}.jpg", 94, 24)
    summary = prepare("filename", root, tmp_path / "out" / "plates.csv", eval_ratio=0.25, seed=1,
                      progress=False)
    train, evals = _texts(tmp_path / "out" / "plates.train.csv"), _texts(tmp_path / "out" / "plates.eval.csv")
    assert len(evals) == 1 and sorted(train + evals) == sorted(names)
    assert summary.alphabet_size == len(set("".join(names)))
    again = prepare("filename", root, tmp_path / "again" / "plates.csv", eval_ratio=0.25, seed=1, progress=False)
    assert again.rows_written == 4 and _texts(tmp_path / "again" / "plates.eval.csv") == evals
    _image(root / "dup" / "皖A2T582_2.jpg", 94, 24)
    prepare("filename", root / "dup", tmp_path / "re.csv", label_regex=r"(.*)_\d+", progress=False)
    assert _texts(tmp_path / "re.csv") == ["皖A2T582"]


# --------------------------------------------------------------------------- lmdb

@pytest.mark.skipif(importlib.util.find_spec("lmdb") is None, reason="lmdb package not installed (optional)")
def test_lmdb_extracts_images(tmp_path):
    import io

    import lmdb

    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, label in enumerate(["first", "Zweite Zeile"], start=1):
            buffer = io.BytesIO()
            Image.new("L", (30 + i, 12), 255).save(buffer, "PNG" if i == 1 else "JPEG")
            txn.put(b"image-%09d" % i, buffer.getvalue())
            txn.put(b"label-%09d" % i, label.encode("utf-8"))
        txn.put(b"num-samples", b"2")
    env.close()
    summary = prepare("lmdb", tmp_path / "db", tmp_path / "out" / "lm.csv", progress=False)
    samples = read_csv(tmp_path / "out" / "lm.csv")
    assert [s.text for s in samples] == ["first", "Zweite Zeile"]
    assert [Path(s.image_path).suffix for s in samples] == [".png", ".jpg"]
    assert Image.open(samples[1].image_path).size == (32, 12)
    assert summary.images_dir == str(tmp_path / "out" / "lm_images")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no staging left


def test_lmdb_failure_leaves_no_staging(tmp_path):
    if importlib.util.find_spec("lmdb") is None:
        with pytest.raises(ImportError, match="pip install lmdb"):
            prepare("lmdb", tmp_path, tmp_path / "out" / "x.csv", progress=False)
        return
    import lmdb

    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"label-000000001", b"x")
    env.close()
    with pytest.raises(ValueError, match="num-samples"):
        prepare("lmdb", tmp_path / "db", tmp_path / "out" / "x.csv", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


# --------------------------------------------------------------------------- options

def test_group_split_spec_parsing():
    split = parse_group_split("train=0,1 eval=2 mod=5")
    assert [split.part_of(str(y)) for y in (1800, 1801, 1802, 1803)] == ["train", "train", "eval", None]
    ranges = parse_group_split("train=1800-1850 eval=1851-1900")
    assert ranges.part_of("1850") == "train" and ranges.part_of("1851") == "eval" and ranges.part_of("x") is None
    names = parse_group_split("train=train eval=test,val")
    assert names.part_of("val") == "eval"
    assert parse_group_split("each").part_of("anything") == "anything"
    with pytest.raises(ValueError, match="expected e.g."):
        parse_group_split("train:0")
    with pytest.raises(ValueError, match="must list integers"):
        parse_group_split("train=a mod=5")
    with pytest.raises(ValueError, match="several parts"):
        parse_group_split("a=1 b=1").part_of("1")


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        prepare("pagexml", tmp_path, tmp_path / "o.csv")
    with pytest.raises(ValueError, match="needs group_by"):
        prepare("gt-pairs", tmp_path, tmp_path / "o.csv", split_by_group="train=1")
    with pytest.raises(ValueError, match="exclusive"):
        prepare("gt-pairs", tmp_path, tmp_path / "o.csv", eval_ratio=0.1, split_by_group="each", group_by="parent")


def test_clean_label():
    assert clean_label("  Straße \n", casefold=True) == tuple("strasse")
    assert clean_label("a\u0364b") == ("a\u0364", "b")
    assert clean_label("e\u0301", normalization="NFC", split="codepoint") == ("é",)


# --------------------------------------------------------------------------- real data (optional)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "archiscribe").is_dir(), reason=f"{SHARED}/archiscribe not present")
def test_real_archiscribe_year_split(tmp_path):
    summary = prepare("gt-pairs", SHARED / "archiscribe", tmp_path / "fraktur.csv", group_by="parent",
                      split_by_group="train=0,1 eval=2 mod=5", progress=False)
    years = {int(Path(s.image_path).parent.name) % 5 for s in read_csv(summary.outputs["eval"][0])}
    assert years == {2}
    years = {int(Path(s.image_path).parent.name) % 5 for s in read_csv(summary.outputs["train"][0])}
    assert years == {0, 1}
    assert any("'|'" in p.reason for p in summary.skipped)
    assert summary.alphabet_size > 80


@pytest.mark.skipif(not (SHARED / "iiit5k" / "trainCharBound.mat").is_file(), reason=f"{SHARED}/iiit5k not present")
def test_real_iiit5k(tmp_path):
    summary = prepare("iiit5k", SHARED / "iiit5k", tmp_path / "iiit5k.csv", group_by="source",
                      split_by_group="each", progress=False)
    assert summary.outputs["train"][1] == 2000 and summary.outputs["test"][1] == 3000


@pytest.mark.skipif(not (SHARED / "plates").is_dir(), reason=f"{SHARED}/plates not present")
def test_real_plates(tmp_path):
    summary = prepare("filename", SHARED / "plates", tmp_path / "plates.csv", progress=False)
    assert summary.rows_written == 1000 and not summary.skipped
