"""Fonts for synthetic text: glyph coverage, symbol fonts, text sources, degradations.

Real font files only: matplotlib's DejaVu (always there) and fonts made from it
with fontTools (a font that has ꝛ, a symbol font). The Fraktur fonts of
scripts/install_fonts.sh are checked only where they are installed.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import read_csv, write_csv
from tf_crnn.cli import main as cli_main
from tf_crnn.datasets import fonts, render, synthetic
from tf_crnn.datasets.text_spec import TextSpec

REPO = Path(__file__).resolve().parents[1]
FRAKTUR_FONTS = REPO / "data" / "fonts" / "fraktur"


def _dejavu_sans() -> str:
    return next(f for f in render.matplotlib_fonts() if Path(f).name == "DejaVuSans.ttf")


def _remapped_font(path: Path, mapping: dict[int, str]) -> str:
    """DejaVuSans with code points mapped to the glyphs of other characters: ``{code point: char}``."""
    from fontTools.ttLib import TTFont

    with TTFont(_dejavu_sans()) as font:
        for table in font["cmap"].tables:
            if table.isUnicode():
                for code, char in mapping.items():
                    table.cmap[code] = table.cmap[ord(char)]
        font.save(path)
    return str(path)


@pytest.fixture(scope="module")
def font_with_r_rotunda(tmp_path_factory) -> str:
    """A font that draws ꝛ (U+A75B; here with the glyph of r), unlike DejaVuSans."""
    return _remapped_font(tmp_path_factory.mktemp("fonts") / "WithRRotunda.ttf", {0xA75B: "r"})


@pytest.fixture(scope="module")
def symbol_font(tmp_path_factory) -> str:
    """A font whose letters draw Greek letters, as a Symbol font does (a -> alpha)."""
    greek_lower = "αβγδεζηθικλμνξοπρστυφχψω"
    greek_upper = greek_lower.upper()
    mapping = {ord(c): greek_lower[i % 24] for i, c in enumerate(string.ascii_lowercase)}
    mapping.update({ord(c): greek_upper[i % 24] for i, c in enumerate(string.ascii_uppercase)})
    return _remapped_font(tmp_path_factory.mktemp("fonts") / "SymbolLike.ttf", mapping)


def test_missing_code_points_checks_each_code_point_of_a_symbol():
    missing = render.missing_code_points(_dejavu_sans(), ["a", "ſ", "ä", "ꝛ", "a\u0364", "o\u0364 "])
    # DejaVuSans has a, ſ and ä, not ꝛ nor U+0364 COMBINING LATIN SMALL LETTER E (but the base letters).
    assert missing == {"ꝛ": ("ꝛ",), "a\u0364": ("\u0364",), "o\u0364 ": ("\u0364",)}
    assert render.missing_symbols(_dejavu_sans(), ["ꝛ", "b"]) == ["ꝛ"]


def test_check_fonts_reports_per_font_and_what_no_font_draws(font_with_r_rotunda):
    report = fonts.check_fonts([_dejavu_sans(), font_with_r_rotunda], symbols=["a", "ſ"],
                               texts=["daſ ꝛc.", "aͤlter", "gut", "ꝛ"])
    dejavu, other = report.fonts
    assert set(dejavu.missing) == {"ꝛ", "aͤ"} and set(other.missing) == {"aͤ"}
    assert dejavu.texts_drawable == 1 and other.texts_drawable == 3
    assert report.undrawable == ["aͤ"] and not report.ok
    assert report.texts == 4 and report.texts_drawable == 3
    table = report.format()
    assert "DejaVuSans.ttf" in table and "draws 1/4 texts" in table
    assert "aͤ [U+0364] (1)" in table  # the code point the font lacks, and how often the symbol occurs
    assert "no font draws 1 symbol(s): aͤ (1)" in table
    assert fonts.check_fonts([_dejavu_sans()], symbols=["a", "ſ"]).ok


def test_symbol_fonts_are_recognised_and_not_used(symbol_font, tmp_path):
    assert fonts.symbol_font(_dejavu_sans()) is None
    reason = fonts.symbol_font(symbol_font)
    assert reason is not None and "a -> alpha" in reason
    report = fonts.check_fonts([symbol_font, _dejavu_sans()], symbols=list("abc"))
    assert report.fonts[0].error == reason and [f.path for f in report.usable] == [_dejavu_sans()]
    # The glyph check alone would pass it: every letter draws something.
    assert render.missing_symbols(symbol_font, list(string.ascii_letters)) == []
    with pytest.warns(UserWarning, match="fonts not used: SymbolLike.ttf: symbol font"):
        synthetic.generate_text(tmp_path, 3, TextSpec(words=["abc"], fonts=[symbol_font, _dejavu_sans()]), workers=1,
                                progress=False)
    record = json.loads((tmp_path / "fonts.json").read_text(encoding="utf-8"))
    assert [f["font"] for f in record["fonts"]] == [_dejavu_sans()] and record["fonts"][0]["images"] == 3
    assert record["not_used"][0]["font"] == symbol_font


def test_a_font_lacking_a_glyph_never_draws_a_text_with_it(font_with_r_rotunda, tmp_path):
    dejavu = _dejavu_sans()
    # Only texts with ꝛ: DejaVuSans draws none of them, so it is not used at all (and said so).
    with pytest.warns(UserWarning, match="DejaVuSans.ttf: draws none of the texts"):
        synthetic.generate_text(tmp_path / "only", 6,
                                TextSpec(words=["aꝛb", "ꝛc."], fonts=[dejavu, font_with_r_rotunda], case="keep"),
                                workers=1, progress=False)
    record = json.loads((tmp_path / "only" / "fonts.json").read_text(encoding="utf-8"))
    assert [(f["font"], f["images"]) for f in record["fonts"]] == [(font_with_r_rotunda, 6)]
    assert record["not_used"] == [{"font": dejavu, "reason": "draws none of the texts"}]
    # Mixed: DejaVuSans draws only the texts without ꝛ; what it lacks is in fonts.json.
    csv_path = synthetic.generate_text(tmp_path / "mixed", 40,
                                       TextSpec(words=["aꝛb", "gut"], fonts=[dejavu, font_with_r_rotunda], case="keep"),
                                       workers=2, progress=False)
    record = json.loads((tmp_path / "mixed" / "fonts.json").read_text(encoding="utf-8"))
    by_font = {f["font"]: f for f in record["fonts"]}
    assert by_font[dejavu]["lacks"] == {"ꝛ": ["U+A75B"]} and by_font[dejavu]["texts_drawable"] == 1
    assert by_font[font_with_r_rotunda]["lacks"] == {} and by_font[font_with_r_rotunda]["texts_drawable"] == 2
    labels = [s.text for s in read_csv(csv_path)]
    assert sum(f["images"] for f in record["fonts"]) == 40
    assert 0 < labels.count("aꝛb") <= by_font[font_with_r_rotunda]["images"]
    assert by_font[dejavu]["images"] > 0


def test_text_from_csv_labels_as_lines_and_as_words(tmp_path):
    labels = [("x1.png", ("D", "e", "r", " ", "W", "e", "g", ".")), ("x2.png", ("g", "u", "t", " ", "u", "n", "d")),
              ("x3.png", ("b", "a", "|d")), ("x4.png", ("a", ";", "b"))]
    rows = [(str(tmp_path / p), s) for p, s in labels[:2]] + [(str(tmp_path / "x4.png"), labels[3][1])]
    csv_path = tmp_path / "src.csv"
    write_csv(rows, csv_path)  # the images need not exist: only the labels are read
    out = synthetic.generate_text(tmp_path / "lines", 12, TextSpec(csv=csv_path, lines=True, case="keep"), workers=1,
                                  progress=False)
    assert {s.text for s in read_csv(out)} <= {"Der Weg.", "gut und", "a;b"}
    assert " " in Alphabet.from_file(tmp_path / "lines" / "alphabet.json").lookup
    out = synthetic.generate_text(tmp_path / "words", 20, TextSpec(csv=csv_path, min_words=2, max_words=3, case="keep"),
                                  workers=1, progress=False)
    for sample in read_csv(out):
        words = sample.text.split(" ")
        assert 2 <= len(words) <= 3 and set(words) <= {"Der", "Weg.", "gut", "und", "a;b"}
    with pytest.raises(ValueError, match="one whole line"):
        TextSpec(csv=csv_path, lines=True, max_words=3)
    with pytest.raises(FileNotFoundError, match="annotation CSV not found"):
        synthetic.generate_text(tmp_path / "bad", 2, TextSpec(csv=tmp_path / "nope.csv"), progress=False)


def test_alphabet_filter_and_historic_s(tmp_path):
    table = tmp_path / "table.json"
    Alphabet.from_symbols(list("abcdeſs ")).save(table)
    with pytest.warns(UserWarning, match="1 of 3 words left out: symbols the alphabet lacks"):
        out = synthetic.generate_text(tmp_path / "out", 10, TextSpec(words=["das", "abs", "xyz"], alphabet=table,
                                                                     historic_s=True, case="keep"),
                                      workers=1, progress=False)
    assert {s.text for s in read_csv(out)} <= {"das", "abs"}  # final s stays round
    assert synthetic.long_s("Reisender sagt es.") == "Reiſender ſagt es."
    assert synthetic.long_s("Ausgabe") == "Auſgabe"  # the rule's known miss (end of a syllable)
    assert synthetic.long_s("ſo ist es") == "ſo ist es"  # already historic: unchanged


@pytest.mark.parametrize("color", [False, True])
def test_degradations_keep_size_channels_and_range(color):
    rng = np.random.default_rng(0)
    font = render.load_font(_dejavu_sans(), 40)
    mask = render.resize_to_height(render.warp(render.text_mask("Schrift", font, 1.0, rng), rng), 40)
    for op in (render.bleed, render.speckle):
        out = op(mask, np.random.default_rng(1), 1.0)
        assert out.shape == mask.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
    mode = "RGB" if color else "L"
    for kwargs in ({"ink_bleed": 1.0}, {"speckles": 1.0}, {"binarize_probability": 1.0},
                   {"invert_probability": 1.0}, {"ink_bleed": 1.0, "speckles": 1.0, "binarize_probability": 1.0}):
        image = render.compose(mask, np.random.default_rng(2), color=color, **kwargs)
        assert image.mode == mode and image.size == (mask.shape[1], mask.shape[0])
        pixels = np.asarray(image)
        assert pixels.dtype == np.uint8
        if kwargs.get("binarize_probability"):
            assert set(np.unique(pixels)) <= {0, 255}
    plain = np.asarray(render.compose(mask, np.random.default_rng(3), color=color)).astype(int)
    inverted = np.asarray(render.compose(mask, np.random.default_rng(3), color=color, invert_probability=1.0))
    assert plain.mean() > 128 > inverted.mean()  # dark text on light paper, then light on dark


def test_degradations_off_draw_no_random_numbers():
    mask = np.zeros((32, 80), np.float32)
    mask[10:20, 10:70] = 1.0
    a = render.compose(mask, np.random.default_rng(5))
    b = render.compose(mask, np.random.default_rng(5), ink_bleed=0.0, speckles=0.0, binarize_probability=0.0,
                       invert_probability=0.0)
    assert a.tobytes() == b.tobytes()  # so images generated before these options are unchanged


def test_generate_text_with_degradations_is_deterministic(tmp_path):
    spec = TextSpec(words=["Weg", "und", "Steg"], min_words=2, max_words=3, case="keep", max_rotation=0.5,
                    max_spacing=0.08, ink_bleed=0.6, speckles=0.3, binarize=0.5, invert=0.2)
    a = synthetic.generate_text(tmp_path / "a", 8, spec, seed=3, workers=1, progress=False)
    synthetic.generate_text(tmp_path / "b", 8, spec, seed=3, workers=2, progress=False)
    assert Path(a).read_bytes() == (tmp_path / "b" / "labels.csv").read_bytes()
    for name in ("000000.png", "000007.png"):
        assert (tmp_path / "a" / "images" / name).read_bytes() == (tmp_path / "b" / "images" / name).read_bytes()
    for sample in read_csv(a):
        with Image.open(sample.image_path) as im:
            assert im.mode == "L" and 32 <= im.height <= 48
    with pytest.raises(ValueError, match="ink_bleed must be in 0..1"):
        TextSpec(ink_bleed=2.0)


def test_fonts_check_command(font_with_r_rotunda, tmp_path, capsys):
    table = tmp_path / "table.json"
    Alphabet.from_symbols(["a", "ſ", "ꝛ"]).save(table)
    assert cli_main(["fonts", "check", _dejavu_sans(), "--alphabet", str(table)]) == 1
    out = capsys.readouterr().out
    assert "DejaVuSans.ttf" in out and "lacks 1: ꝛ" in out and "no font draws 1 symbol(s): ꝛ" in out
    assert cli_main(["fonts", "check", _dejavu_sans(), font_with_r_rotunda, "--alphabet", str(table)]) == 0
    assert "no font draws 0 symbol(s)" in capsys.readouterr().out
    assert cli_main(["fonts", "check", _dejavu_sans()]) == 2
    assert "give the symbols to check" in capsys.readouterr().err


@pytest.mark.skipif(not (FRAKTUR_FONTS / "Blankenburg_UNZ1A.ttf").is_file(),
                    reason="Fraktur fonts not installed (scripts/install_fonts.sh)")
def test_installed_fraktur_fonts_draw_long_s_and_r_rotunda():
    report = fonts.check_fonts(render.find_fonts(FRAKTUR_FONTS), ["ſ", "ꝛ", "ß", "aͤ"])
    assert [f.name for f in report.fonts] == ["Blankenburg_UNZ1A.ttf", "UnifrakturCook.ttf",
                                              "UnifrakturMaguntia.ttf"]
    for font in report.fonts:  # ſ and ꝛ are there; the combining e above is in none of them
        assert font.error is None and font.missing == {"aͤ": ("\u0364",)}
