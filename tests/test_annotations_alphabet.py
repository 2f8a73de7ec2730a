"""CSV parsing (multi-code-point symbols, delimiters) and alphabet checks."""
import json

import pytest

from tf_crnn.alphabet import BLANK, Alphabet, AlphabetError
from tf_crnn.annotations import AnnotationError, graphemes, read_csv, split_label, write_csv


def test_split_label_keeps_multi_code_point_symbols():
    assert split_label("|a\u0364|b|special_char| |") == ("a\u0364", "b", "special_char", " ")
    assert split_label("a|b", "|") == ("a", "b")


def test_graphemes_group_combining_marks():
    assert graphemes("da\u0364ſs") == ["d", "a\u0364", "ſ", "s"]


def test_read_csv_resolves_relative_paths_and_keeps_delimiter_in_label(tmp_path):
    csv = tmp_path / "sub" / "set.csv"
    csv.parent.mkdir()
    csv.write_text("\ufeffimg/1.png;|a|;|b|\n\n/abs/2.png;|x\u0364| |y|\n", encoding="utf-8")
    samples = read_csv(csv)
    assert [s.image_path for s in samples] == [str(tmp_path / "sub" / "img" / "1.png"), "/abs/2.png"]
    assert samples[0].symbols == ("a", ";", "b")
    assert samples[1].symbols == ("x\u0364", " ", "y") and samples[1].text == "x\u0364 y"
    assert (samples[1].csv_file, samples[1].line) == (str(csv), 3)


@pytest.mark.parametrize("content, message", [
    ("a.png|x|\n", "1: no ';'"),
    ("a.png;|x|\nb.png;||\n", "2: empty label"),
    (";|x|\n", "1: empty image path"),
])
def test_read_csv_errors_name_file_and_line(tmp_path, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(content, encoding="utf-8")
    with pytest.raises(AnnotationError, match=f"bad.csv:{message}"):
        read_csv(csv)


def test_write_csv_round_trip_and_refuses_unwritable_symbol(tmp_path):
    rows = [(str(tmp_path / "i.png"), ("a\u0364", ";", "z"))]
    assert write_csv(rows, tmp_path / "out.csv") == 1
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == "i.png;|a\u0364|;|z|\n"
    assert read_csv(tmp_path / "out.csv")[0].symbols == ("a\u0364", ";", "z")
    with pytest.raises(AnnotationError, match="string_split_delimiter"):
        write_csv([(str(tmp_path / "i.png"), ("a|b",))], tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_alphabet_codes_blank_and_round_trip(tmp_path):
    alphabet = Alphabet({"a": 1, "b": 2, "a\u0364": 3})
    assert BLANK == 0 and alphabet.num_classes == 4
    assert alphabet.symbols_by_code == ["", "a", "b", "a\u0364"]
    assert alphabet.encode(["a\u0364", "b"]) == [3, 2]
    assert alphabet.decode([3, 0, 2]) == "a\u0364b"
    alphabet.save(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text(encoding="utf-8")) == {"a": 1, "b": 2, "a\u0364": 3}
    assert Alphabet.from_file(tmp_path / "t.json").lookup == alphabet.lookup


@pytest.mark.parametrize("table, message", [
    ({"a": 0}, "codes must be integers >= 1"),
    ({"a": 1, "b": 1}, "share code 1"),
    ({"a": "1"}, "codes must be integers"),
    ({}, "empty"),
])
def test_alphabet_rejects_bad_tables(table, message):
    with pytest.raises(AlphabetError, match=message):
        Alphabet(table)


def test_alphabet_check_names_file_line_and_symbol(tmp_path):
    csv = tmp_path / "set.csv"
    csv.write_text("a.png;|1|2|\nb.png;|1|x|\n", encoding="utf-8")
    alphabet = Alphabet.from_file("data/alphabets/digits.json")
    with pytest.raises(AlphabetError) as err:
        alphabet.check(read_csv(csv))
    assert f"{csv}:2: symbol 'x'" in str(err.value)
    assert "set.csv:1" not in str(err.value)


def test_shipped_alphabets_are_valid():
    import glob

    files = sorted(glob.glob("data/alphabets/*.json"))
    assert {"digits.json", "letters_digits_symbols.json", "fraktur.json"} <= {f.split("/")[-1] for f in files}
    for f in files:
        assert len(Alphabet.from_file(f)) >= 10
    assert "a\u0364" in Alphabet.from_file("data/alphabets/fraktur.json")


def test_listing_cuts_long_problem_lists():
    from tf_crnn.annotations import listing

    assert listing(["a.csv:1: x", "a.csv:2: y"]) == "  a.csv:1: x\n  a.csv:2: y"
    assert listing([f"row {i}" for i in range(25)], limit=3) == "  row 0\n  row 1\n  row 2\n  ... and 22 more"
