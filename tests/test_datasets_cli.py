"""The dataset subcommands through argparse: exit codes, outputs, messages."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
from PIL import Image

from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import read_csv, write_csv
from tf_crnn.cli import datasets as cli
from tf_crnn.datasets.text_spec import TextSpec


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tf-crnn")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _csv(tmp_path, name, labels):
    rows = []
    for i, label in enumerate(labels):
        path = tmp_path / f"{name}_{i}.png"
        Image.new("L", (120, 32), 255).save(path)
        rows.append((str(path), tuple(label)))
    write_csv(rows, tmp_path / f"{name}.csv")
    return str(tmp_path / f"{name}.csv")


def test_alphabet_build_prints_counts_and_saves_them(tmp_path, capsys):
    train = _csv(tmp_path, "train", ["abba", "cab", "aé"])
    table = tmp_path / "tables" / "t.json"
    assert run(["alphabet", "build", train, "-o", str(table), "--min-count", "2"]) == 0
    out = capsys.readouterr().out
    assert "LATIN SMALL LETTER A" in out and "dropped 2 symbol" in out
    assert set(Alphabet.from_file(table).lookup) == {"a", "b"}
    counts = json.loads((tmp_path / "tables" / "t.counts.json").read_text(encoding="utf-8"))
    assert counts == {"a": 4, "b": 3, "c": 1, "é": 1}
    assert list(counts)[:2] == ["a", "b"]  # most frequent first


def test_alphabet_check_lists_unknown_symbols_and_exits_1(tmp_path, capsys):
    train = _csv(tmp_path, "train", ["abc"])
    evals = _csv(tmp_path, "eval", ["abc", "abxx", "zy"])
    table = tmp_path / "t.json"
    assert run(["alphabet", "build", train, "-o", str(table)]) == 0
    capsys.readouterr()
    assert run(["alphabet", "check", str(table), train]) == 0
    assert "all symbols" in capsys.readouterr().out
    assert run(["alphabet", "check", str(table), evals]) == 1
    out = capsys.readouterr().out
    assert "'x' U+0078" in out and "2 time(s)" in out and "eval.csv:2 (2 times)" in out
    assert "eval.csv:3" in out and "'z'" in out


def test_alphabet_check_missing_table_exit_2(tmp_path, capsys):
    train = _csv(tmp_path, "train", ["abc"])
    assert run(["alphabet", "check", str(tmp_path / "nope.json"), train]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_prepare_cli_writes_split_and_summary(tmp_path, capsys):
    for year, text in (("1800", "eins"), ("1802", "zwei; drei"), ("1803", "vier")):
        folder = tmp_path / "gt" / year
        folder.mkdir(parents=True)
        Image.new("L", (50, 20), 255).save(folder / "l.png")
        (folder / "l.gt.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "out" / "f.csv"
    code = run(["prepare", "gt-pairs", str(tmp_path / "gt"), str(out), "--group-by", "parent",
                "--split-by-group", "train=0,1 eval=2 mod=5", "--summary-json", str(tmp_path / "s.json"),
                "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "train: 1 rows" in printed and "not selected" in printed
    assert [s.text for s in read_csv(tmp_path / "out" / "f.eval.csv")] == ["zwei; drei"]
    summary = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert summary["rows_written"] == 2 and summary["not_selected"] == {"1803": 1}


def test_prepare_cli_conversion_error_exit_1(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "x.gt.txt").write_text("no image", encoding="utf-8")
    assert run(["prepare", "gt-pairs", str(tmp_path / "gt"), str(tmp_path / "o.csv"), "--no-progress"]) == 1
    assert "x.gt.txt" in capsys.readouterr().err
    assert run(["prepare", "tsv", str(tmp_path / "missing.tsv"), str(tmp_path / "o.csv")]) == 2


def test_generate_cli(tmp_path, capsys):
    assert run(["generate", "numbers", str(tmp_path / "n"), "-n", "3", "--workers", "1", "--no-progress"]) == 0
    assert len(read_csv(tmp_path / "n" / "labels.csv")) == 3
    assert run(["generate", "text", str(tmp_path / "t"), "-n", "2", "--max-words", "2", "--workers", "1",
                "--no-progress"]) == 0
    assert len(read_csv(tmp_path / "t" / "labels.csv")) == 2
    assert run(["generate", "numbers", str(tmp_path / "bad"), "-n", "2", "--min-length", "9"]) == 2


def test_generate_text_defaults_are_the_text_specs():
    # The options are made from TextSpec's fields: same names (dest), same defaults.
    parser = argparse.ArgumentParser(prog="tf-crnn")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate", "text", "out", "-n", "1"])
    for field in dataclasses.fields(TextSpec):
        assert getattr(args, field.name) == field.default, field.name
    args = parser.parse_args(["generate", "text", "out", "-n", "1", "--from-csv", "a.csv", "b.csv", "--lines"])
    assert args.csv == ["a.csv", "b.csv"] and args.lines


def test_generate_text_cli_bad_value_exit_2(tmp_path, capsys):
    assert run(["generate", "text", str(tmp_path / "t"), "-n", "2", "--min-words", "3", "--max-words", "2",
                "--no-progress"]) == 2
    assert "min_words <= max_words" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # refused before anything is written


def test_register_adds_all_subcommands():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    assert {"prepare", "alphabet", "generate", "validate"} <= set(sub.choices)
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "pagexml", "a", "b"])
