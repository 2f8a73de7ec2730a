"""tf-crnn predict --page / --alto: recognised text written back into PAGE XML and ALTO.

The writer on its own (hand-made texts: where the TextEquivs go, what happens to the ground truth, the words,
the ALTO word boxes), then end to end on the real Kant pages with tiny real models (their text is noise: these
tests are about the files): the PAGE files validate against the PAGE 2019 schema, read back through the reader
with the texts the model predicted, line for line, and keep their layout; two models vote; a page whose image is
missing is reported and the other pages are still written.
"""
from __future__ import annotations

import json
import re
import shutil
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_DATA, tiny_params
from lxml import etree

from tf_crnn.cli import main as cli_main
from tf_crnn.datasets.layout import LayoutOptions, local_name
from tf_crnn.datasets.line_images import cut_line, load_page, page_background
from tf_crnn.datasets.page_writer import LineText, WriteOptions, alto_words, write_recognition
from tf_crnn.datasets.pages import PageFile, read_pages
from tf_crnn.page_recognition import output_paths

KANT = SHARED_DATA / "ocrd-kant-1784"
needs_kant = pytest.mark.skipif(not KANT.is_dir(), reason=f"the Kant pages are not here: {KANT} is absent")
SCHEMA_2019 = Path(__file__).parent / "data" / "page" / "pagecontent-2019-07-15.xsd"
#: The ALTO 2.0 schema (the Kant ALTO's namespace) and the XLink schema it imports (tests/data/alto/README.md).
ALTO_SCHEMAS = Path(__file__).parent / "data" / "alto"
#: Elements that hold text (or, Metadata, the writing's time): everything else is layout and must not change.
TEXT_ELEMENTS = {"TextEquiv", "Word", "Glyph", "Metadata", "String", "SP", "HYP"}


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(SCHEMA_2019)))


class LocalXlink(etree.Resolver):
    """The ALTO schemas import ``http://www.loc.gov/standards/xlink/xlink.xsd``; CI has no network: the copy."""

    def resolve(self, url, pubid, context):
        if url.endswith("/xlink.xsd"):
            return self.resolve_filename(str(ALTO_SCHEMAS / "xlink.xsd"), context)
        return None


@pytest.fixture(scope="module")
def alto_schema():
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(LocalXlink())
    return etree.XMLSchema(etree.parse(str(ALTO_SCHEMAS / "alto-2-0.xsd"), parser))


def assert_valid(schema: etree.XMLSchema, path: Path) -> None:
    assert schema.validate(etree.parse(str(path))), f"{path}: {schema.error_log}"


def layout_of(path: Path) -> list:
    """Every element outside :data:`TEXT_ELEMENTS`, with its attributes, in document order."""
    out = []
    for element in etree.parse(str(path)).getroot().iter():
        if not isinstance(element.tag, str) or any(local_name(e) in TEXT_ELEMENTS
                                                   for e in (element, *element.iterancestors())):
            continue
        out.append((element.tag, dict(element.attrib)))
    return out


def kant_pages(fmt: str):
    return list(read_pages(fmt, [KANT / ("OCR-D-GT-PAGE" if fmt == "page" else "OCR-D-GT-ALTO")]))


# --------------------------------------------------------------------------- the writer

@needs_kant
def test_page_writer_keeps_ground_truth_at_index_2_removes_words_and_validates(tmp_path, schema):
    originals = kant_pages("page")
    for page in kant_pages("page"):
        recognised = [(line, LineText(f"line {n}  {line.id}", n / 100)) for n, line in enumerate(page.lines)]
        out = write_recognition(page, recognised, tmp_path / page.xml.name, WriteOptions(models=("m",)))
        assert schema.validate(etree.parse(str(out))), schema.error_log.last_error
        assert layout_of(out) == layout_of(page.xml)
        tree = etree.parse(str(out))
        assert not list(tree.iter("{*}Word")), "the ground truth's words would contradict the recognised lines"
        item = tree.find("{*}Metadata/{*}MetadataItem")
        assert item.get("type") == "processingStep" and item.find("{*}Labels/{*}Label").get("value") == "m"
        region = next(tree.iter("{*}TextRegion"))  # one line: its text is the line's
        assert region.findtext("{*}TextEquiv[@index='1']/{*}Unicode") == "line 0  tl_1"
    options = LayoutOptions(images=str(KANT / "OCR-D-IMG"))
    again = list(read_pages("page", [tmp_path], options))
    ground_truth = list(read_pages("page", [tmp_path], LayoutOptions(images=options.images, text_index=2)))
    for original, page, kept in zip(originals, again, ground_truth):
        assert [line.id for line in page.lines] == [line.id for line in original.lines]
        assert [line.text for line in page.lines] == [f"line {n}  {line.id}" for n, line in enumerate(original.lines)]
        assert [line.text for line in kept.lines] == [line.text for line in original.lines]
        confs = [float(e.get("conf")) for line in page.lines for e in line.element.findall("{*}TextEquiv")
                 if e.get("index") == "1"]
        assert confs == pytest.approx([n / 100 for n in range(len(page.lines))])


@needs_kant
def test_page_writer_replace_text_and_another_index(tmp_path, schema):
    page = kant_pages("page")[0]
    write_recognition(page, [(line, LineText("neu", 0.5)) for line in page.lines], tmp_path / "replaced.xml",
                      WriteOptions(keep_text=False))
    tree = etree.parse(str(tmp_path / "replaced.xml"))
    assert schema.validate(tree), schema.error_log.last_error
    for line in tree.iter("{*}TextLine"):
        assert [(e.get("index"), e.findtext("{*}Unicode")) for e in line.findall("{*}TextEquiv")] == [("1", "neu")]

    page = kant_pages("page")[0]  # the ground truth stays the main text; the recognition goes to index 3
    write_recognition(page, [(line, LineText("neu", 0.5)) for line in page.lines], tmp_path / "beside.xml",
                      WriteOptions(text_index=3))
    tree = etree.parse(str(tmp_path / "beside.xml"))
    assert schema.validate(tree), schema.error_log.last_error
    first = next(tree.iter("{*}TextLine"))
    assert [e.get("index") for e in first.findall("{*}TextEquiv")] == ["1", "3"]
    assert first.findtext("{*}TextEquiv[@index='1']/{*}Unicode") == page.lines[0].text
    with pytest.raises(ValueError, match="index must be >= 0"):
        WriteOptions(text_index=-1)


@needs_kant
def test_alto_writer_words_read_back_and_layout_kept(tmp_path, alto_schema):
    originals = kant_pages("alto")
    for page in originals:  # the ground truth is valid ALTO 2.0: so must the written copies be
        assert_valid(alto_schema, page.xml)
    images = tmp_path / "images"
    images.mkdir()
    for page in kant_pages("alto"):
        (images / f"{page.xml.stem}.tif").symlink_to(page.image.resolve())
        texts = [" ".join(line.text.split()[::-1]) + f"  {n}" if n % 5 else "" for n, line in enumerate(page.lines)]
        out = write_recognition(page, [(line, LineText(text, 0.5)) for line, text in zip(page.lines, texts)],
                                tmp_path / page.xml.name)
        assert layout_of(out) == layout_of(page.xml)
        assert_valid(alto_schema, out)
    for original, page in zip(originals, read_pages("alto", [tmp_path / "PAGE_0017_ALTO.xml",
                                                              tmp_path / "PAGE_0020_ALTO.xml"],
                                                     LayoutOptions(images=str(images)))):
        assert [line.id for line in page.lines] == [line.id for line in original.lines]
        assert [line.text for line in page.lines] == [
            " ".join(line.text.split()[::-1]) + f" {n}" if n % 5 else "" for n, line in enumerate(original.lines)]
        boxes = [(float(s.get("HPOS")), float(s.get("WIDTH"))) for s in page.lines[1].element.iter("{*}String")]
        line_box = float(page.lines[1].element.get("HPOS")), float(page.lines[1].element.get("WIDTH"))
        assert boxes[0][0] == line_box[0] and sum(line_box) == pytest.approx(sum(boxes[-1]), abs=0.02)


PAGE_2019 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
PAGE_2013 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15"


def synthetic_page(folder: Path, namespace: str) -> Path:
    """A page image with two dark bars and its PAGE file: line l1 with ground truth and a TextStyle, line l2 with
    a degenerate (2-point) polygon."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("L", (400, 120), 235)
    ImageDraw.Draw(image).rectangle((20, 20, 300, 45), fill=20)
    image.save(folder / "page.png")
    xml = folder / "page.xml"
    xml.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="{namespace}">
  <Metadata><Creator>test</Creator><Created>2020-01-01T00:00:00</Created>
    <LastChange>2020-01-01T00:00:00</LastChange></Metadata>
  <Page imageFilename="page.png" imageWidth="400" imageHeight="120">
    <TextRegion id="r1">
      <Coords points="10,10 390,10 390,110 10,110"/>
      <TextLine id="l1">
        <Coords points="15,15 305,15 305,50 15,50"/>
        <TextEquiv><Unicode>ground truth</Unicode></TextEquiv>
        <TextStyle fontSize="12"/>
      </TextLine>
      <TextLine id="l2">
        <Coords points="15,60 305,60"/>
        <TextEquiv><Unicode>flat</Unicode></TextEquiv>
      </TextLine>
      <TextEquiv><Unicode>ground truth
flat</Unicode></TextEquiv>
    </TextRegion>
  </Page>
</PcGts>
""", encoding="utf-8")
    return xml


def test_page_writer_2013_file_stays_2013(tmp_path):
    xml = synthetic_page(tmp_path / "in", PAGE_2013)
    [page] = read_pages("page", [xml])
    out = write_recognition(page, [(page.lines[0], LineText("neu", 0.75))], tmp_path / "out.xml")
    root = etree.parse(str(out)).getroot()
    assert root.tag == f"{{{PAGE_2013}}}PcGts" and root.find("{*}Metadata/{*}MetadataItem") is None
    assert root.findtext("{*}Metadata/{*}LastChange").startswith(("20", "21")) and \
        root.findtext("{*}Metadata/{*}LastChange") != "2020-01-01T00:00:00"
    lines = list(root.iter(f"{{{PAGE_2013}}}TextLine"))
    assert [local_name(c) for c in lines[0]] == ["Coords", "TextEquiv", "TextEquiv", "TextStyle"]
    assert [c.findtext("{*}Unicode") for c in lines[1]] == [None, "flat"], "a line not recognised keeps its text"
    region = root.find("{*}Page/{*}TextRegion")
    assert [e.findtext("{*}Unicode") for e in region.findall("{*}TextEquiv")] == ["neu", "ground truth\nflat"]


def test_alto_words_split_the_line_box_by_characters():
    words = alto_words("ab  c", 0.5, (100.0, 10.0, 40.0, 8.0))  # "ab c": 4 characters of 10 pixels
    assert [(tag, a.get("CONTENT")) for tag, a in words] == [("String", "ab"), ("SP", None), ("String", "c")]
    assert [(a["HPOS"], a["WIDTH"]) for _, a in words] == [("100", "20"), ("120", "10"), ("130", "10")]
    assert all(a["VPOS"] == "10" for _, a in words) and words[0][1]["HEIGHT"] == "8"
    assert words[0][1]["WC"] == words[2][1]["WC"] == "0.5"
    assert alto_words(" ", 0.25, (0.0, 0.0, 30.0, 5.0)) == [
        ("String", {"CONTENT": "", "HPOS": "0", "VPOS": "0", "HEIGHT": "5", "WIDTH": "30", "WC": "0.25"})]


def test_output_paths_refuse_name_clashes_and_overwriting(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = [PageFile(tmp_path / "a" / "p.xml"), PageFile(tmp_path / "b" / "p.xml")]
    with pytest.raises(ValueError, match="two pages are named p.xml"):
        output_paths(files, tmp_path / "out")
    with pytest.raises(ValueError, match="would overwrite it"):
        output_paths(files[:1], tmp_path / "a")
    assert output_paths(files[:1], tmp_path / "out") == [tmp_path / "out" / "p.xml"]


# --------------------------------------------------------------------------- end to end, tiny real models

@pytest.fixture(scope="module")
def noisy_exports(digits_data, tmp_path_factory):
    """Two tiny CRNNs trained one epoch at learning rate 1e-9 (seeds 1, 2), with a space in their alphabet: they
    keep the untrained network's noise, so each line gets several symbols (a trained one-epoch model reads
    nothing), words too."""
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.data import load_split
    from tf_crnn.trainer import Trainer, deterministic

    out = tmp_path_factory.mktemp("page_predict")
    lookup = json.loads((ROOT / "data" / "alphabets" / "digits.json").read_text(encoding="utf-8"))
    alphabet_file = out / "digits_space.json"
    alphabet_file.write_text(json.dumps({**lookup, " ": max(lookup.values()) + 1}), encoding="utf-8")
    exports = []
    for seed in (1, 2):
        params = tiny_params(digits_data, output_model_dir=str(out / f"model{seed}"), n_epochs=1,
                             learning_rate=1e-9, mixed_precision="off", lookup_alphabet_file=str(alphabet_file))
        alphabet = Alphabet.from_file(params.lookup_alphabet_file)
        with deterministic(seed):
            trainer = Trainer(params, alphabet)
            trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                        load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=seed)
        exports.append(trainer.export(str(out / f"model{seed}" / "export")))
    return exports


def predicted(model, pages) -> list[list]:
    """The model's predictions for every line of ``pages``, cut as prepare cuts them (independently of predict)."""
    out = []
    for page in pages:
        image = load_page(page.image)
        background = page_background(image)
        crops = [cut_line(image, line.polygon, line.baseline, background) for line in page.lines]
        out.append(model.predict(crops, batch_size=16))
    return out


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@needs_kant
def test_predict_page_writes_valid_pages_with_the_predicted_text(noisy_exports, tmp_path, schema, capsys):
    from tf_crnn.loader import PredictionModel

    out = tmp_path / "ocr"
    assert cli_main(["predict", "--model", noisy_exports[0], "--page", str(KANT / "OCR-D-GT-PAGE"),
                     "--output-dir", str(out), "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'PAGE_0017_PAGE.xml'}\t" in printed and "lines" in printed
    originals = kant_pages("page")
    expected = predicted(PredictionModel(noisy_exports[0]), originals)
    assert any(p.text.strip() for preds in expected for p in preds), "the noisy model should read something"
    written = list(read_pages("page", [out], LayoutOptions(images=str(KANT / "OCR-D-IMG"))))
    assert [p.xml.name for p in written] == [p.xml.name for p in originals]
    for original, page, preds in zip(originals, written, expected):
        assert schema.validate(etree.parse(str(page.xml))), schema.error_log.last_error
        assert layout_of(page.xml) == layout_of(original.xml)
        assert [line.id for line in page.lines] == [line.id for line in original.lines]
        assert [line.text for line in page.lines] == [nfc(p.text) for p in preds]
        confs = [float(line.element.find("{*}TextEquiv[@index='1']").get("conf")) for line in page.lines]
        assert confs == pytest.approx([p.score for p in preds], rel=1e-4, abs=1e-9)


@needs_kant
def test_predict_alto_writes_strings_with_word_confidence(noisy_exports, tmp_path, alto_schema, capsys):
    from tf_crnn.loader import PredictionModel

    out = tmp_path / "ocr"
    assert cli_main(["predict", "--model", noisy_exports[0], "--alto", str(KANT / "OCR-D-GT-ALTO"),
                     "--output-dir", str(out)]) == 0
    originals = kant_pages("alto")
    expected = predicted(PredictionModel(noisy_exports[0]), originals)
    # The Kant ALTO names no image (mets.xml pairs them): give the copies theirs by name.
    images = tmp_path / "images"
    images.mkdir()
    for page in originals:
        (images / f"{page.xml.stem}.tif").symlink_to(page.image.resolve())
    written = list(read_pages("alto", [out], LayoutOptions(images=str(images))))
    for original, page, preds in zip(originals, written, expected):
        assert_valid(alto_schema, page.xml)
        assert layout_of(page.xml) == layout_of(original.xml)
        assert [line.id for line in page.lines] == [line.id for line in original.lines]
        assert [line.text for line in page.lines] == [nfc(" ".join(p.text.split())) for p in preds]
        for line, prediction in zip(page.lines, preds):
            strings = line.element.findall("{*}String")
            assert len(strings) == max(1, len(prediction.text.split()))
            assert [float(s.get("WC")) for s in strings] == pytest.approx([prediction.score] * len(strings),
                                                                          rel=1e-4, abs=1e-9)


@needs_kant
def test_predict_page_with_two_models_votes(noisy_exports, tmp_path, schema, capsys):
    from tf_crnn.voting import VotingModel

    out = tmp_path / "ocr"
    assert cli_main(["predict", "--model", noisy_exports[0], "--model", noisy_exports[1],
                     "--page", str(KANT / "OCR-D-GT-PAGE" / "PAGE_0020_PAGE.xml"), "--output-dir", str(out)]) == 0
    original = kant_pages("page")[1]
    [expected] = predicted(VotingModel(noisy_exports), [original])
    [page] = read_pages("page", [out], LayoutOptions(images=str(KANT / "OCR-D-IMG")))
    assert schema.validate(etree.parse(str(page.xml))), schema.error_log.last_error
    assert [line.text for line in page.lines] == [nfc(p.text) for p in expected]
    labels = etree.parse(str(page.xml)).findall("{*}Metadata/{*}MetadataItem/{*}Labels/{*}Label")
    assert [label.get("value") for label in labels] == noisy_exports


@needs_kant
def test_a_page_without_its_image_is_reported_and_the_others_written(noisy_exports, tmp_path, capsys):
    lost = tmp_path / "lost"
    lost.mkdir()
    shutil.copy(KANT / "OCR-D-GT-PAGE" / "PAGE_0017_PAGE.xml", lost / "LOST_PAGE.xml")  # no workspace, no image
    out = tmp_path / "ocr"
    code = cli_main(["predict", "--model", noisy_exports[0], "--page", str(lost / "LOST_PAGE.xml"),
                     str(KANT / "OCR-D-GT-PAGE" / "PAGE_0020_PAGE.xml"), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"LOST_PAGE\.xml: page image not found; tried .*INPUT_0017\.tif", err), err
    assert "Traceback" not in err and "1 page(s) not written" in err
    assert sorted(p.name for p in out.iterdir()) == ["PAGE_0020_PAGE.xml"]

    assert cli_main(["predict", "--model", noisy_exports[0], "--page", str(lost), "--output-dir", str(out)]) == 2
    assert "none of the 1 page(s) could be read" in capsys.readouterr().err
    assert cli_main(["predict", "--model", noisy_exports[0], "--page", str(lost)]) == 2
    assert "--page / --alto need --output-dir DIR" in capsys.readouterr().err
    image = tmp_path / "line.png"
    load_page(KANT / "OCR-D-IMG" / "INPUT_0020.tif").crop((100, 300, 900, 360)).save(image)
    assert cli_main(["predict", "--model", noisy_exports[0], str(image), "--output-dir", str(out)]) == 2
    assert "--output-dir applies to --page / --alto only" in capsys.readouterr().err


def test_predict_page_reports_a_line_it_cannot_cut(noisy_exports, tmp_path, schema, capsys):
    xml = synthetic_page(tmp_path / "in", PAGE_2019)
    argv = ["predict", "--model", noisy_exports[0], "--page", str(xml), "--output-dir", str(tmp_path / "out")]
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    assert f"{xml}: line l2 left out: degenerate polygon: 2 point(s)" in err
    tree = etree.parse(str(tmp_path / "out" / "page.xml"))
    assert schema.validate(tree), schema.error_log.last_error
    [l1, l2] = tree.iter(f"{{{PAGE_2019}}}TextLine")
    assert [e.get("index") for e in l1.findall("{*}TextEquiv")] == ["1", "2"] and l1.find("{*}TextEquiv").get("conf")
    assert [e.findtext("{*}Unicode") for e in l2.findall("{*}TextEquiv")] == ["flat"]
    assert cli_main([*argv, "--strict"]) == 1
    assert "0 page(s) not written, 1 line(s) left out" in capsys.readouterr().err
