"""tf-crnn predict --page / --alto: recognised text written back into PAGE XML and ALTO.

The writer on its own (hand-made texts: where the TextEquivs go, what happens to the ground truth, the words,
the ALTO word boxes), then end to end on the real Kant pages with tiny real models (their text is noise: these
tests are about the files): the PAGE files validate against the PAGE 2019 schema, read back through the reader
with the texts the model predicted, line for line, and keep their layout; two models vote; a page whose image is
missing is reported and the other pages are still written. ALTO files are validated against the schema of their
own version: the Kant pages (ALTO 2.0) against 2.0, synthetic ALTO 2, 3 and 4 pages against 2.0, 3.1 and 4.4.
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
#: The ALTO 2.0 (the Kant ALTO's namespace), 3.1 and 4.4 schemas and the XLink schema they import
#: (tests/data/alto/README.md).
ALTO_SCHEMAS = Path(__file__).parent / "data" / "alto"
#: ALTO schema version (the file ``alto-<version>.xsd`` in :data:`ALTO_SCHEMAS`) -> its namespace.
ALTO_NAMESPACES = {version: f"http://www.loc.gov/standards/alto/ns-v{version[0]}#" for version in ("2-0", "3-1", "4-4")}
#: Elements that hold text (or, Metadata, the writing's time): everything else is layout and must not change.
TEXT_ELEMENTS = {"TextEquiv", "Word", "Glyph", "Metadata", "String", "SP", "HYP"}


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(SCHEMA_2019)))


class LocalXlink(etree.Resolver):
    """The ALTO schemas (2.0, 3.1, 4.4) import ``http://www.loc.gov/standards/xlink/xlink.xsd`` (their only import);
    CI has no network: the copy. Anything else is not resolved, and with ``no_network`` the schema fails to load."""

    def resolve(self, url, pubid, context):
        if url.endswith("/xlink.xsd"):
            return self.resolve_filename(str(ALTO_SCHEMAS / "xlink.xsd"), context)
        return None


@pytest.fixture(scope="module")
def alto_schemas() -> dict[str, etree.XMLSchema]:
    """Version (a key of :data:`ALTO_NAMESPACES`) -> its ALTO schema, loaded without network."""
    schemas = {}
    for version in ALTO_NAMESPACES:
        parser = etree.XMLParser(no_network=True)
        parser.resolvers.add(LocalXlink())
        schemas[version] = etree.XMLSchema(etree.parse(str(ALTO_SCHEMAS / f"alto-{version}.xsd"), parser))
    return schemas


@pytest.fixture(scope="module")
def alto_schema(alto_schemas):
    return alto_schemas["2-0"]


def assert_valid(schema: etree.XMLSchema, path: Path) -> None:
    assert schema.validate(etree.parse(str(path))), f"{path}: {schema.error_log}"


def namespaces_of(path: Path) -> set[str]:
    """The namespaces of all elements of ``path``."""
    return {etree.QName(e).namespace for e in etree.parse(str(path)).getroot().iter() if isinstance(e.tag, str)}


def layout_of(path: Path) -> list:
    """Every element outside :data:`TEXT_ELEMENTS`, with its attributes, in document order."""
    out = []
    for element in etree.parse(str(path)).getroot().iter():
        if not isinstance(element.tag, str) or any(local_name(e) in TEXT_ELEMENTS
                                                   for e in (element, *element.iterancestors())):
            continue
        out.append((element.tag, dict(element.attrib)))
    return out


def geometry(line) -> tuple[list, list | None]:
    """A read line's polygon and baseline (page pixels) as lists, to compare."""
    return line.polygon.tolist(), None if line.baseline is None else line.baseline.tolist()


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


def page_image(path: Path, size: tuple[int, int], bars: list[tuple[int, int, int, int]], dpi: int | None = None):
    """A light grey page image of ``size`` with dark ``bars`` (x0, y0, x1, y1), saved to ``path``."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("L", size, 235)
    for bar in bars:
        ImageDraw.Draw(image).rectangle(bar, fill=20)
    image.save(path, **({"dpi": (dpi, dpi)} if dpi else {}))


def synthetic_page(folder: Path, namespace: str) -> Path:
    """A page image with two dark bars and its PAGE file: line l1 with ground truth and a TextStyle, line l2 with
    a degenerate (2-point) polygon."""
    page_image(folder / "page.png", (400, 120), [(20, 20, 300, 45)])
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


#: Pixel size of :func:`synthetic_alto`'s page; its ALTO lines: (ID, box (x, y, width, height), polygon or None).
ALTO_PAGE_SIZE = (400, 190)
ALTO_LINES = [("l1", (15, 15, 290, 30), None),
              ("l2", (15, 55, 290, 30), [(15, 58), (305, 55), (305, 85), (15, 88)]),
              ("l3", None, [(20, 100), (300, 100), (300, 130), (20, 130)]),
              ("l4", (15, 145, 290, 30), None)]


def synthetic_alto(folder: Path, version: str, unit: str = "pixel") -> Path:
    """A page image (127 dpi) with a dark bar per line and its ALTO file (``folder/page.xml``) of ``version`` (a key
    of :data:`ALTO_NAMESPACES`), coordinates in ``unit``: ``pixel`` or ``mm10`` (2 units a pixel at 127 dpi).

    The lines (:data:`ALTO_LINES`): l1 a box and a ``BASELINE`` (ALTO 4.4: points; before: a y), text with ``SP``
    and ``HYP``; l2 a box and a ``Shape/Polygon``, one ``String`` with an empty ``CONTENT`` (the least text a valid
    line has: every version wants a String); l3 a ``Shape/Polygon`` and no box (ALTO 3+), a ``String`` with
    ``ALTERNATIVE`` s; l4 a box and two words. ALTO 2.0 has no ``Shape`` and wants a box: there l2 has its box only
    and l3 its polygon's bounding box.
    """
    scale = {"pixel": 1, "mm10": 2}[unit]
    shapes = version != "2-0"

    def box(x, y, width, height) -> str:
        return f'HPOS="{x * scale}" VPOS="{y * scale}" WIDTH="{width * scale}" HEIGHT="{height * scale}"'

    def shape(polygon) -> str:
        points = " ".join(f"{x * scale},{y * scale}" for x, y in polygon)
        return f'<Shape><Polygon POINTS="{points}"/></Shape>' if shapes else ""

    baseline = f"{15 * scale},{40 * scale} {305 * scale},{40 * scale}" if version == "4-4" else f"{40 * scale}"
    l3_box = box(20, 100, 280, 30) if not shapes else ""
    (_, l1, _), (_, l2, l2_polygon), (_, _, l3_polygon), (_, l4, _) = ALTO_LINES
    page_image(folder / "page.png", ALTO_PAGE_SIZE, [(x, y + 5, x + w - 10, y + h - 5) for x, y, w, h in
                                                     [(15, 15, 290, 30), (15, 55, 290, 30), (20, 100, 280, 30),
                                                      (15, 145, 290, 30)]], dpi=127)
    width, height = ALTO_PAGE_SIZE
    xml = folder / "page.xml"
    xml.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="{ALTO_NAMESPACES[version]}" xmlns:xlink="http://www.w3.org/1999/xlink">
  <Description>
    <MeasurementUnit>{unit}</MeasurementUnit>
    <sourceImageInformation><fileName>page.png</fileName></sourceImageInformation>
  </Description>
  <Layout>
    <Page ID="p1" PHYSICAL_IMG_NR="1" WIDTH="{width * scale}" HEIGHT="{height * scale}">
      <PrintSpace {box(0, 0, width, height)}>
        <TextBlock ID="b1" {box(10, 10, 380, 170)}>
          <TextLine ID="l1" {box(*l1)} BASELINE="{baseline}">
            <String CONTENT="alte" {box(15, 15, 80, 30)}/><SP/><String CONTENT="Zei"/><HYP CONTENT="-"/>
          </TextLine>
          <TextLine ID="l2" {box(*l2)}>
            {shape(l2_polygon)}<String CONTENT=""/>
          </TextLine>
          <TextLine ID="l3" {l3_box}>
            {shape(l3_polygon)}
            <String CONTENT="Wort" WC="0.9"><ALTERNATIVE>Work</ALTERNATIVE><ALTERNATIVE>Wart</ALTERNATIVE></String>
          </TextLine>
          <TextLine ID="l4" {box(*l4)}>
            <String CONTENT="bleibt"/><SP/><String CONTENT="so"/>
          </TextLine>
        </TextBlock>
      </PrintSpace>
    </Page>
  </Layout>
</alto>
""", encoding="utf-8")
    return xml


@pytest.mark.parametrize("version, unit", [("2-0", "pixel"), ("3-1", "pixel"), ("4-4", "pixel"), ("3-1", "mm10"),
                                           ("4-4", "mm10")])
def test_alto_writer_v2_v3_v4_pages_stay_valid_in_their_version(tmp_path, alto_schemas, version, unit):
    schema = alto_schemas[version]
    xml = synthetic_alto(tmp_path / "in", version, unit)
    assert_valid(schema, xml)  # the test's page is valid ALTO of its version: so must the written one be
    [page] = read_pages("alto", [xml])
    assert [(line.id, line.text) for line in page.lines] == [("l1", "alte Zei-"), ("l2", ""), ("l3", "Wort"),
                                                             ("l4", "bleibt so")]
    texts = {"l1": "Kant  1784", "l2": "", "l3": "ein  Wort."}  # l4 is not recognised
    recognised = [(line, LineText(texts[line.id], n / 4)) for n, line in enumerate(page.lines) if line.id in texts]
    out = write_recognition(page, recognised, tmp_path / "out.xml")

    assert_valid(schema, out)
    assert namespaces_of(out) == {ALTO_NAMESPACES[version]}, "the file keeps its ALTO version"
    assert layout_of(out) == layout_of(xml)
    [again] = read_pages("alto", [out], LayoutOptions(images=str(tmp_path / "in")))
    assert [(line.id, line.text) for line in again.lines] == [("l1", "Kant 1784"), ("l2", ""), ("l3", "ein Wort."),
                                                              ("l4", "bleibt so")]
    assert [geometry(line) for line in again.lines] == [geometry(line) for line in page.lines]
    assert geometry(page.lines[0])[1], "l1's BASELINE is read (and compared)"
    shape = ["Shape"] if version != "2-0" else []
    assert [[local_name(c) for c in line.element] for line in again.lines] == [
        ["String", "SP", "String"], [*shape, "String"], [*shape, "String", "SP", "String"], ["String", "SP", "String"]]
    l1, l2, l3, _ = (line.element for line in again.lines)
    assert [float(s.get("WC")) for line in (l1, l2, l3) for s in line.iter("{*}String")] == [0, 0, 0.25, 0.5, 0.5]
    assert not list(l3.iter("{*}ALTERNATIVE")), "the old word's alternatives went with it"
    # The words split the line's box in the file's unit: l3's is its polygon's bounding box (ALTO 2.0: its box).
    scale = {"pixel": 1, "mm10": 2}[unit]
    strings = [[float(s.get(name)) for name in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] for s in l3.iter("{*}String")]
    assert strings[0][:2] == [20 * scale, 100 * scale] and strings[-1][3] == 30 * scale
    assert strings[-1][0] + strings[-1][2] == pytest.approx(300 * scale, abs=0.02)
    assert [(s.get("CONTENT"), s.get("HPOS"), s.get("WIDTH")) for s in l2.iter("{*}String")] == [
        ("", str(15 * scale), str(290 * scale))]

    # The check can fail: a Shape after the words (ALTO 3.1 and 4.4 want it first; 2.0 has none) is invalid.
    if version != "2-0":
        l2.append(l2.find("{*}Shape"))
        assert not schema.validate(again.tree)


def test_alto_3_1_line_with_a_shape_among_its_words_keeps_one_shape_first(tmp_path, alto_schemas):
    """ALTO 3.1's TextLine is ``(Shape?, String, SP?)+, HYP?``: a Shape may precede every String (4.0 allows one,
    first). Replacing the words must not leave two Shapes before the new ones; the line keeps its outline."""
    xml = synthetic_alto(tmp_path / "in", "3-1")
    text = xml.read_text(encoding="utf-8")
    among = '<Shape><Polygon POINTS="160,55 305,55 305,85 160,85"/></Shape>'
    text = text.replace('<String CONTENT=""/>', f'<String CONTENT="ab"/><SP/>{among}<String CONTENT="cd"/>')
    l4_shape = among.replace("55", "145").replace("85", "175")  # l4: its only Shape, after a word
    text = text.replace('<SP/><String CONTENT="so"/>', f'<SP/>{l4_shape}<String CONTENT="so"/>')
    xml.write_text(text, encoding="utf-8")
    assert_valid(alto_schemas["3-1"], xml)
    [page] = read_pages("alto", [xml])
    out = write_recognition(page, [(line, LineText("neu", 0.5)) for line in page.lines], tmp_path / "out.xml")
    assert_valid(alto_schemas["3-1"], out)
    [again] = read_pages("alto", [out], LayoutOptions(images=str(tmp_path / "in")))
    assert [[local_name(c) for c in line.element] for line in again.lines] == [
        ["String"], ["Shape", "String"], ["Shape", "String"], ["Shape", "String"]]
    assert [geometry(line) for line in again.lines] == [geometry(line) for line in page.lines]
    assert again.lines[3].element.find("{*}Shape/{*}Polygon").get("POINTS") == "160,145 305,145 305,175 160,175"


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


@pytest.mark.parametrize("version, unit", [("3-1", "pixel"), ("4-4", "mm10")])
def test_predict_alto_v3_v4_pages_stay_valid_in_their_version(noisy_exports, tmp_path, alto_schemas, version, unit):
    from tf_crnn.loader import PredictionModel

    xml = synthetic_alto(tmp_path / "in", version, unit)
    assert_valid(alto_schemas[version], xml)
    out = tmp_path / "out"
    assert cli_main(["predict", "--model", noisy_exports[0], "--alto", str(xml), "--output-dir", str(out)]) == 0
    originals = list(read_pages("alto", [xml]))
    [expected] = predicted(PredictionModel(noisy_exports[0]), originals)
    assert any(p.text.strip() for p in expected), "the noisy model should read something"
    written = out / "page.xml"
    assert_valid(alto_schemas[version], written)
    assert namespaces_of(written) == {ALTO_NAMESPACES[version]}, "the file keeps its ALTO version"
    assert layout_of(written) == layout_of(xml)
    [page] = read_pages("alto", [written], LayoutOptions(images=str(xml.parent)))
    assert [line.id for line in page.lines] == [line for line, _, _ in ALTO_LINES]
    assert [line.text for line in page.lines] == [nfc(" ".join(p.text.split())) for p in expected]
    for line, prediction in zip(page.lines, expected):
        assert [local_name(c) for c in line.element][:1] == (["Shape"] if line.id in ("l2", "l3") else ["String"])
        strings = line.element.findall("{*}String")
        assert [float(s.get("WC")) for s in strings] == pytest.approx([prediction.score] * len(strings),
                                                                      rel=1e-4, abs=1e-9)
