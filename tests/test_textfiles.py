"""Text files as other tools write them: byte-order marks, Windows encodings, UTF-16, header rows, empty files,
line ends, repeated JSON keys. Each is read the one UTF-8 way or refused with the file, the line and what to do."""
from __future__ import annotations

import codecs
import json

import pytest

from tf_crnn.alphabet import Alphabet, AlphabetError
from tf_crnn.annotations import AnnotationError, read_csv
from tf_crnn.config import ConfigError, load_config_file
from tf_crnn.textfiles import TextFileError, load_json, read_text

ROWS = "a.png;|M|ü|l|l|e|r|\nb.png;|ſ|t|r|a|ß|e|\n"


def test_utf8_with_or_without_byte_order_mark_and_any_line_end_reads_the_same(tmp_path):
    expected = [("a.png", ("M", "ü", "l", "l", "e", "r")), ("b.png", ("ſ", "t", "r", "a", "ß", "e"))]
    variants = {"plain.csv": ROWS.encode(), "bom.csv": codecs.BOM_UTF8 + ROWS.encode(),
                "windows.csv": ROWS.replace("\n", "\r\n").encode(),
                "classic_mac.csv": ROWS.replace("\n", "\r").encode()}
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        samples = read_csv(tmp_path / name)
        assert [(s.image_path.rsplit("/", 1)[1], s.symbols) for s in samples] == expected, name
        assert [s.line for s in samples] == [1, 2], name


def test_windows_1252_csv_names_line_byte_offset_and_the_conversion(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(ROWS.encode("cp1252", errors="ignore").replace(b"\xc5\xbf", b""))  # ü is 0xfc in Windows-1252
    with pytest.raises(AnnotationError) as e:
        read_csv(path)
    message = str(e.value)
    assert f"{path}:1: the annotation CSV is not UTF-8: byte offset 9 holds 0xfc" in message
    assert f"iconv -f WINDOWS-1252 -t UTF-8 {path} > {tmp_path / 'excel.utf8.csv'}" in message


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16LE"), ("utf-32", "UTF-32LE")])
def test_utf16_and_utf32_with_byte_order_mark_are_named(tmp_path, encoding, name):
    path = tmp_path / "unicode_text.csv"
    path.write_bytes(ROWS.encode(encoding))  # Python writes the little-endian mark first on this machine
    with pytest.raises(AnnotationError, match=rf"is {name} text \(it starts with that byte-order mark\); tf-crnn "
                                              rf"reads UTF-8. Convert it: iconv -f {name} -t UTF-8"):
        read_csv(path)


def test_utf16_without_byte_order_mark_is_not_read_as_text_with_nul_bytes(tmp_path):
    path = tmp_path / "no_bom.csv"
    path.write_bytes(ROWS.encode("utf-16-le"))
    with pytest.raises(AnnotationError, match=r"no_bom.csv:1: the annotation CSV contains NUL bytes .*UTF-16"):
        read_csv(path)


def test_empty_csv_has_no_rows_and_a_header_row_is_refused(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert read_csv(empty) == []
    only_bom = tmp_path / "only_bom.csv"
    only_bom.write_bytes(codecs.BOM_UTF8)
    assert read_csv(only_bom) == []
    header = tmp_path / "header.csv"
    header.write_text("filename;text\n" + ROWS, encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"header.csv:1: filename;text looks like a header row, .*delete the "
                                              r"first line"):
        read_csv(header)
    # an image really called "image" (no extension) is a row, not a header
    (tmp_path / "image").write_bytes(b"")
    named = tmp_path / "named.csv"
    named.write_text("image;|x|\n", encoding="utf-8")
    assert read_csv(named)[0].symbols == ("x",)


def test_repeated_json_keys_are_ambiguous_in_alphabets_and_configs(tmp_path):
    table = tmp_path / "table.json"
    table.write_text('{"a": 1, "b": 2, "a": 3}', encoding="utf-8")
    with pytest.raises(AlphabetError, match=r"table.json: the alphabet lookup table gives the key 'a' twice"):
        Alphabet.from_file(table)
    table.write_bytes(codecs.BOM_UTF8 + json.dumps({"a": 1, "ä": 2}, ensure_ascii=False).encode())
    assert Alphabet.from_file(table).lookup == {"a": 1, "ä": 2}
    config = tmp_path / "config.json"
    config.write_text('{"n_epochs": 3,\n "n_epochs": 30}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.json: the config file gives the key 'n_epochs' twice"):
        load_config_file(config)
    config.write_bytes('{"n_epochs": 3, "mongo_db_name": "prüfung"}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"config.json:1: the config file is not UTF-8: byte offset 36 holds 0xfc"):
        load_config_file(config)


def test_missing_file_and_bad_json_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lexicon not found: .*nowhere.txt"):
        read_text(tmp_path / "nowhere.txt", "lexicon")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }', encoding="utf-8")
    with pytest.raises(TextFileError, match=r"table .*bad.json is not valid JSON: line 2, column 7"):
        load_json(bad, "table")


def test_an_empty_training_csv_stops_with_the_split_named_not_a_traceback(tmp_path):
    from conftest import tiny_params

    from tf_crnn.data import DataError, load_split

    empty = tmp_path / "train.csv"
    empty.write_bytes(b"")
    params = tiny_params(tmp_path)
    with pytest.raises(DataError, match=r"train split: no rows in \[.*train.csv'\]"):
        load_split([str(empty)], params, Alphabet.from_file(params.lookup_alphabet_file), "train", progress=False)
