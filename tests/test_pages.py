"""PAGE XML and ALTO: the readers on the real Kant pages, line cutting, and the errors a user meets."""
from __future__ import annotations

import argparse
import math
import re

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image, ImageDraw, ImageFont

from tf_crnn.annotations import read_csv
from tf_crnn.cli import datasets as cli
from tf_crnn.datasets.converters import ConversionError, prepare
from tf_crnn.datasets.layout import LayoutError, LayoutOptions
from tf_crnn.datasets.line_images import MARGIN, cut_line, load_page, page_background, skew_degrees
from tf_crnn.datasets.pages import read_pages

KANT = SHARED_DATA / "ocrd-kant-1784"
needs_kant = pytest.mark.skipif(not KANT.is_dir(), reason=f"the Kant pages are not here: {KANT} is absent")
PAGE_2019 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
PAGE_2013 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tf-crnn")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _no_space(text: str) -> str:
    return re.sub(r"\s", "", text)


def _ink_rows(image: Image.Image, background: int) -> np.ndarray:
    """Indices of the rows holding dark pixels (ink: 100 grey levels below the background)."""
    pixels = np.asarray(image, dtype=np.int16)
    return np.flatnonzero(((background - pixels) > 100).sum(axis=1) >= 2)


# --------------------------------------------------------------------------- the Kant pages

@needs_kant
def test_kant_page_and_alto_give_the_same_55_lines():
    pages = list(read_pages("page", [KANT / "OCR-D-GT-PAGE"]))
    altos = list(read_pages("alto", [KANT / "OCR-D-GT-ALTO"]))  # the ALTO names no image: found through mets.xml
    images = [(KANT / "OCR-D-IMG" / f"INPUT_00{n}.tif").resolve() for n in (17, 20)]
    assert [p.image.resolve() for p in pages] == [a.image.resolve() for a in altos] == images
    page_lines = [line for p in pages for line in p.lines]
    alto_lines = [line for p in altos for line in p.lines]
    assert len(page_lines) == len(alto_lines) == 55
    assert [line.id for line in page_lines] == [line.id for line in alto_lines]
    assert [_no_space(line.text) for line in page_lines] == [_no_space(line.text) for line in alto_lines]
    # The ALTO has no SP: the gap rule restores the spaces of 50 lines exactly; the other 5 differ by a space
    # the boxes do not show (the PAGE text writes "1784 ." where the ALTO boxes of "1784" and "." touch).
    exact = sum(p.text == a.text for p, a in zip(page_lines, alto_lines))
    assert exact == 50
    assert page_lines[0].text == alto_lines[0].text == "Berliniſche Monatsſchrift."
    # Every line has a baseline but the PAGE file's initial "A" (a line of its own).
    assert [line.id for line in page_lines if line.baseline is None] == ["line_1478541866583_902"]
    assert all(line.baseline is not None for line in alto_lines)


@needs_kant
def test_kant_crops_have_the_line_height_and_ink(tmp_path, capsys):
    assert run(["prepare", "page", str(KANT / "OCR-D-GT-PAGE"), str(tmp_path / "kant.csv"), "--no-progress"]) == 0
    assert "all: 55 rows" in (out := capsys.readouterr().out) and "skipped: 0 rows" in out
    assert run(["validate", str(tmp_path / "kant.csv"), "--alphabet", str(tmp_path / "kant.alphabet.json"),
                "--no-progress"]) == 0
    samples = read_csv(tmp_path / "kant.csv")
    lines = [line for p in read_pages("page", [KANT / "OCR-D-GT-PAGE"]) for line in p.lines]
    page = load_page(KANT / "OCR-D-IMG" / "INPUT_0017.tif")
    background = page_background(page)
    for sample, line in zip(samples, lines):
        assert sample.text == line.text
        height = np.ptp(line.polygon[:, 1])
        with Image.open(sample.image_path) as crop:
            assert crop.mode == "L"
            assert height <= crop.height <= height + 2 * max(2, MARGIN * height) + 2, sample.image_path
            dark = (background - np.asarray(crop, dtype=np.int16)) > 100
            assert dark.mean() > 0.01, f"{sample.image_path} holds no ink"
    assert {s.image_path.split("/")[-2] for s in samples} == {"PAGE_0017_PAGE", "PAGE_0020_PAGE"}


@needs_kant
def test_cli_prepare_alto_from_the_mets_file(tmp_path, capsys):
    out = tmp_path / "alto" / "kant.csv"
    assert run(["prepare", "alto", str(KANT / "mets.xml"), str(out), "--page-group", "OCR-D-GT-ALTO",
                "--image-group", "OCR-D-IMG", "--group-by", "parent", "--split-by-group", "each",
                "--no-progress"]) == 0
    assert "PAGE_0017_ALTO: 24 rows" in (printed := capsys.readouterr().out) and "PAGE_0020_ALTO: 31 rows" in printed
    samples = read_csv(tmp_path / "alto" / "kant.PAGE_0017_ALTO.csv")
    assert samples[0].text == "Berliniſche Monatsſchrift."
    # A METS file as source without the group to read: the error lists its groups.
    assert run(["prepare", "page", str(KANT / "mets.xml"), str(tmp_path / "x.csv"), "--no-progress"]) == 2
    assert "--page-group" in (err := capsys.readouterr().err) and "OCR-D-GT-PAGE" in err


# --------------------------------------------------------------------------- synthetic pages

def _page_xml(namespace: str, image: str, lines: list[dict], order: list[str] | None = None,
              point_children: bool = False) -> str:
    """A PAGE file: one TextRegion per entry of ``lines`` (keys id, region, points, baseline, text)."""
    def coords(tag: str, points) -> str:
        if point_children:
            return f"<{tag}>" + "".join(f'<Point x="{x:g}" y="{y:g}"/>' for x, y in points) + f"</{tag}>"
        return f'<{tag} points="{" ".join(f"{x:g},{y:g}" for x, y in points)}"/>'

    regions = []
    for line in lines:
        baseline = coords("Baseline", line["baseline"]) if line.get("baseline") is not None else ""
        text = f"<TextEquiv><Unicode>{line['text']}</Unicode></TextEquiv>" if line.get("text") is not None else ""
        regions.append(f'<TextRegion id="{line["region"]}"><Coords points="0,0 1,0 1,1"/>'
                       f'<TextLine id="{line["id"]}">{coords("Coords", line["points"])}{baseline}{text}</TextLine>'
                       "</TextRegion>")
    reading = ""
    if order:
        refs = "".join(f'<RegionRefIndexed index="{i}" regionRef="{r}"/>' for i, r in enumerate(order))
        reading = f'<ReadingOrder><OrderedGroup id="ro">{refs}</OrderedGroup></ReadingOrder>'
    return (f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{namespace}"><Metadata/>'
            f'<Page imageFilename="{image}" imageWidth="1" imageHeight="1">{reading}{"".join(regions)}</Page></PcGts>')


def _rotate(points: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """Where ``Image.rotate(degrees, center=centre)`` moves ``points`` (counter-clockwise on screen)."""
    a = math.radians(degrees)
    x, y = points[:, 0] - centre[0], points[:, 1] - centre[1]
    return np.stack([centre[0] + x * math.cos(a) + y * math.sin(a), centre[1] - x * math.sin(a) + y * math.cos(a)], 1)


@pytest.mark.parametrize("namespace, point_children", [(PAGE_2019, False), (PAGE_2013, True)])
def test_a_rotated_page_is_cut_into_upright_lines(tmp_path, namespace, point_children):
    font = ImageFont.load_default(size=36)
    page = Image.new("L", (1400, 900), 255)
    draw = ImageDraw.Draw(page)
    ascent, _ = font.getmetrics()
    texts = ["Upright lines from a skewed page", "Ganz schief gescannt, 1784", "the third line of text"]
    lines = []
    for i, text in enumerate(texts):
        x, y = 150, 200 + 200 * i
        draw.text((x, y), text, font=font, fill=0)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        box = np.array([[left - 6, top - 6], [right + 6, top - 6], [right + 6, bottom + 6], [left - 6, bottom + 6]])
        lines.append(dict(id=f"l{i}", region=f"r{i}", text=text, points=box, top=top, bottom=bottom,
                          baseline=np.array([[left, y + ascent], [right, y + ascent]])))
    skew, centre = 5.0, (700, 450)
    page.rotate(skew, resample=Image.Resampling.BICUBIC, center=centre, fillcolor=255).save(tmp_path / "page.png")
    for line in lines:
        line["points"] = _rotate(line["points"], skew, centre)
        line["baseline"] = _rotate(line["baseline"], skew, centre)
    (tmp_path / "page.xml").write_text(_page_xml(namespace, "page.png", lines, point_children=point_children),
                                       encoding="utf-8")

    (read,) = read_pages("page", [tmp_path / "page.xml"])
    assert [line.text for line in read.lines] == texts
    image = load_page(read.image)
    for line, drawn in zip(read.lines, lines):
        upright, skewed = cut_line(image, line.polygon, line.baseline), cut_line(image, line.polygon, None)
        ink = _ink_rows(upright, 255)
        # Upright: the ink rows are the text's own height (as drawn before the page was turned); cut without
        # the baseline, the same line spans about its width x sin(5°) more rows (here 35 more than 34).
        assert np.ptp(ink) <= drawn["bottom"] - drawn["top"] + 4
        assert np.ptp(_ink_rows(skewed, 255)) > 1.5 * np.ptp(ink)
        assert abs(upright.width - np.ptp(drawn["points"][:, 0])) < 20


def test_skew_of_a_baseline_drawn_either_way_and_16_bit_pages(tmp_path):
    forward = np.array([[0.0, 0.0], [100.0, 10.0]])
    assert skew_degrees(forward) == pytest.approx(math.degrees(math.atan(0.1)))
    assert skew_degrees(forward[::-1]) == pytest.approx(skew_degrees(forward))  # right to left: not upside down
    assert skew_degrees(np.array([[0.0, 0.0], [100.0, 0.5]])) == 0.0  # below 0.5 degrees: left straight
    assert skew_degrees(None) == 0.0
    values = np.full((40, 60), 50000, dtype=np.uint16)
    values[10:20, 10:50] = 1000
    Image.fromarray(values).save(tmp_path / "deep.png")
    grey = np.asarray(load_page(tmp_path / "deep.png"))
    assert grey[0, 0] == 255 and grey[15, 15] == 0  # stretched to 8 bits, not clipped to white


def test_reading_order_nested_regions_and_text_index(tmp_path):
    Image.new("L", (100, 100), 255).save(tmp_path / "p.png")
    box = "10,10 90,10 90,20 10,20"
    xml = (f'<PcGts xmlns="{PAGE_2019}"><Page imageFilename="p.png" imageWidth="100" imageHeight="100">'
           '<ReadingOrder><OrderedGroup id="g"><RegionRefIndexed index="1" regionRef="a"/>'
           '<OrderedGroupIndexed id="g2" index="0"><RegionRefIndexed index="0" regionRef="inner"/>'
           '</OrderedGroupIndexed></OrderedGroup></ReadingOrder>'
           f'<TextRegion id="a"><Coords points="{box}"/>'
           f'<TextLine id="a1"><Coords points="{box}"/><TextEquiv index="2"><Unicode>second</Unicode></TextEquiv>'
           '<TextEquiv index="1"><Unicode>first</Unicode></TextEquiv></TextLine>'
           f'<TextRegion id="inner"><Coords points="{box}"/><TextLine id="i1"><Coords points="{box}"/>'
           '<TextEquiv><Unicode>Cafe\u0301</Unicode></TextEquiv></TextLine></TextRegion>'
           f'<TextLine id="a2"><Coords points="{box}"/></TextLine></TextRegion>'
           f'<TableRegion id="t"><Coords points="{box}"/><TextRegion id="cell"><Coords points="{box}"/>'
           f'<TextLine id="c1"><Coords points="{box}"/><TextEquiv><Unicode>cell</Unicode></TextEquiv></TextLine>'
           '</TextRegion></TableRegion></Page></PcGts>')
    (tmp_path / "p.xml").write_text(xml, encoding="utf-8")
    (page,) = read_pages("page", [tmp_path / "p.xml"])
    # "inner" (index 0 in a nested group) first, then region a's own lines, then the table no group names.
    assert [line.id for line in page.lines] == ["i1", "a1", "a2", "c1"]
    assert [line.text for line in page.lines] == ["Café", "first", "", "cell"]
    (page,) = read_pages("page", [tmp_path / "p.xml"], LayoutOptions(text_index=2))
    assert [line.id for line in page.lines] == ["a1", "a2"] and page.lines[0].text == "second"
    assert page.problems == [("i1", "no TextEquiv with index 2 (indices: [None])"),
                             ("c1", "no TextEquiv with index 2 (indices: [None])")]


# --------------------------------------------------------------------------- what goes wrong

def test_missing_image_names_the_xml_and_every_path_tried(tmp_path):
    (tmp_path / "book" / "xml").mkdir(parents=True)
    (tmp_path / "book" / "mets.xml").write_text('<mets:mets xmlns:mets="http://www.loc.gov/METS/"/>')
    xml = tmp_path / "book" / "xml" / "p1.xml"
    xml.write_text(_page_xml(PAGE_2019, "img/p1.tif", [dict(id="l1", region="r1", text="a",
                                                              points=[(0, 0), (9, 0), (9, 9)])]))
    with pytest.raises(LayoutError) as error:
        list(read_pages("page", [xml], LayoutOptions(images=str(tmp_path / "imgs"))))
    message = str(error.value)
    for tried in (tmp_path / "book" / "xml" / "img" / "p1.tif", tmp_path / "book" / "img" / "p1.tif",
                  tmp_path / "imgs" / "p1.tif", tmp_path / "imgs" / "p1.png"):
        assert str(tried) in message
    assert message.startswith(str(xml)) and "--images DIR" in message
    with pytest.raises(ConversionError, match=r"p1\.xml: page image not found; tried"):
        prepare("page", xml, tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()


def _alto(unit: str, image: str, height: int) -> str:
    return ('<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Description>'
            f"<MeasurementUnit>{unit}</MeasurementUnit><sourceImageInformation><fileName>{image}</fileName>"
            '</sourceImageInformation></Description><Layout><Page ID="p" WIDTH="2000" HEIGHT="2000"><PrintSpace>'
            f'<TextBlock ID="b"><TextLine ID="line_7" HPOS="100" VPOS="100" WIDTH="800" HEIGHT="{height}">'
            '<String CONTENT="Mass" HPOS="100" VPOS="100" WIDTH="300" HEIGHT="50"/><SP/>'
            '<String CONTENT="stab" HPOS="450" VPOS="100" WIDTH="300" HEIGHT="50"/><HYP CONTENT="-"/>'
            "</TextLine></TextBlock></PrintSpace></Page></Layout></alto>")


def test_alto_mm10_converts_with_the_image_resolution_and_fails_clearly_without(tmp_path):
    page = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(page).rectangle((20, 20, 100, 40), fill=0)
    page.save(tmp_path / "dpi.png", dpi=(300, 300))
    page.save(tmp_path / "nodpi.png")
    (tmp_path / "ok.xml").write_text(_alto("mm10", "dpi.png", 50))
    (page_read,) = read_pages("alto", [tmp_path / "ok.xml"])
    (line,) = page_read.lines
    assert line.text == "Mass stab-"  # SP is the space, HYP's content appended
    # 100 mm10 = 10 mm = 118.1 px at 300 dpi; a height of 50 mm10 = 59.1 px.
    # (PNG stores pixels per metre: 300 dpi reads back as 299.9994.)
    np.testing.assert_allclose(line.polygon.min(axis=0), [100 * 300 / 254] * 2, rtol=1e-4)
    np.testing.assert_allclose(np.ptp(line.polygon[:, 1]), 50 * 300 / 254, rtol=1e-4)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "mm10.xml").write_text(_alto("mm10", "../nodpi.png", 50))
    with pytest.raises(ConversionError) as error:
        prepare("alto", tmp_path / "bad", tmp_path / "out.csv", progress=False)
    assert re.search(r"bad/mm10\.xml: MeasurementUnit mm10 needs the page image's resolution .*nodpi\.png "
                     r"records none", str(error.value))


def test_empty_and_degenerate_lines_are_reported_by_file_and_line_id(tmp_path, capsys):
    Image.new("L", (400, 200), 255).save(tmp_path / "p.png")
    good = [(10, 10), (300, 10), (300, 60), (10, 60)]
    lines = [dict(id="good", region="r1", text="gut", points=good),
             dict(id="flat", region="r2", text="flach", points=[(10, 10), (300, 10), (150, 10)]),
             dict(id="two", region="r3", text="zwei", points=[(10, 10), (300, 60)]),
             dict(id="none", region="r4", text="leer", points=[]),
             dict(id="away", region="r5", text="weg", points=[(900, 900), (990, 900), (990, 990)]),
             dict(id="mute", region="r6", text="", points=good)]
    xml = tmp_path / "p.xml"
    xml.write_text(_page_xml(PAGE_2019, "p.png", lines), encoding="utf-8")
    with pytest.raises(ConversionError) as error:
        prepare("page", xml, tmp_path / "out.csv", progress=False)
    message = str(error.value)
    assert "5 row(s)" in message
    for line_id, reason in [("flat", "zero area"), ("two", "2 point(s)"), ("none", "0 point(s)"),
                            ("away", "outside the page image"), ("mute", "no text")]:
        assert re.search(rf"p\.xml: line {line_id}: .*{re.escape(reason)}", message), line_id
    assert run(["prepare", "page", str(xml), str(tmp_path / "out.csv"), "--skip-errors", "--no-progress"]) == 0
    assert "skipped: 5 rows" in capsys.readouterr().out
    assert [s.text for s in read_csv(tmp_path / "out.csv")] == ["gut"]


def test_mets_without_structmap_pairs_groups_by_position(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "alto").mkdir()
    files = {"IMG": [], "ALTO": []}
    for n in (1, 2):
        page = Image.new("L", (1000, 300), 255)
        ImageDraw.Draw(page).rectangle((100, 100, 100 + 300 * n, 150), fill=0)
        page.save(tmp_path / "img" / f"scan{n}.png")
        (tmp_path / "alto" / f"a{n}.xml").write_text(_alto("pixel", "", 50).replace("<fileName></fileName>", ""))
        files["IMG"].append(f'<mets:file ID="img{n}" MIMETYPE="image/png"><mets:FLocat xlink:href="img/scan{n}.png"/>'
                            "</mets:file>")
        files["ALTO"].append(f'<mets:file ID="alto{n}"><mets:FLocat xlink:href="alto/a{n}.xml"/></mets:file>')
    groups = "".join(f'<mets:fileGrp USE="{use}">{"".join(entries)}</mets:fileGrp>' for use, entries in files.items())
    (tmp_path / "mets.xml").write_text('<mets:mets xmlns:mets="http://www.loc.gov/METS/" '
                                       'xmlns:xlink="http://www.w3.org/1999/xlink">'
                                       f"<mets:fileSec>{groups}</mets:fileSec></mets:mets>")
    pages = list(read_pages("alto", [tmp_path / "mets.xml"], LayoutOptions(page_group="ALTO", image_group="IMG")))
    assert [(p.xml.name, p.image.name) for p in pages] == [("a1.xml", "scan1.png"), ("a2.xml", "scan2.png")]
    with pytest.raises(LayoutError, match=r"no file group 'PAGE'; its groups are \['ALTO', 'IMG'\]"):
        list(read_pages("alto", [tmp_path / "mets.xml"], LayoutOptions(page_group="PAGE")))


def test_layout_options_belong_to_page_and_alto(tmp_path, capsys):
    assert run(["prepare", "gt-pairs", str(tmp_path), str(tmp_path / "o.csv"), "--images", str(tmp_path)]) == 2
    assert "--images applies to the page and alto formats only" in capsys.readouterr().err
    assert run(["prepare", "page", str(tmp_path), str(tmp_path / "o.csv"), "--group-by", "top"]) == 2
    assert "group_by='top' does not apply to page" in capsys.readouterr().err
