"""unicode_normalization: labels, alphabet symbols and lexicons compared in one Unicode form.

A real tiny CRNN is trained on digit images whose labels carry a decomposed ``u`` + U+0308 (NFD) while the
alphabet holds the composed ``ü`` (NFC); its export is then evaluated and decoded with an NFD lexicon.
"""
from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT, tiny_params

from tf_crnn.alphabet import Alphabet, AlphabetError
from tf_crnn.annotations import read_csv

NFC_U = "\u00fc"  # ü, one code point
NFD_U = "u\u0308"  # u + COMBINING DIAERESIS
assert unicodedata.normalize("NFC", NFD_U) == NFC_U


def _nfd_split(digits_data: Path, split: str, out: Path) -> Path:
    """The digits split's CSV with an NFD ``ü`` written after every label (a macOS / transcription tool export)."""
    rows = read_csv(digits_data / "data" / split / "labels.csv")
    csv = out / f"{split}_nfd.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    # Written as text so the label really holds the two code points (write_csv would be given them as one symbol).
    csv.write_text("".join(f"{r.image_path};|{'|'.join(r.symbols)}|{NFD_U}|\n" for r in rows), encoding="utf-8")
    assert NFD_U in csv.read_text(encoding="utf-8") and NFC_U not in csv.read_text(encoding="utf-8")
    return csv


def _nfc_alphabet(out: Path) -> Path:
    """The digits table plus ``ü`` in NFC."""
    table = json.loads((ROOT / "data" / "alphabets" / "digits.json").read_text(encoding="utf-8"))
    table[NFC_U] = max(table.values()) + 1
    path = out / "digits_u.json"
    path.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def nfd_training(digits_data, tmp_path_factory):
    """A tiny CRNN trained one epoch on NFD labels with an NFC alphabet (the default form), and exported."""
    from tf_crnn.data import load_split
    from tf_crnn.trainer import Trainer

    out = tmp_path_factory.mktemp("unicode")
    params = tiny_params(digits_data, output_model_dir=str(out / "model"), n_epochs=1,
                         csv_files_train=[str(_nfd_split(digits_data, "train", out))],
                         csv_files_eval=[str(_nfd_split(digits_data, "eval", out))],
                         lookup_alphabet_file=str(_nfc_alphabet(out)))
    assert params.unicode_normalization == "NFC"  # the default
    alphabet = Alphabet.from_file(params.lookup_alphabet_file, params.unicode_normalization)
    train = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    evaluation = load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
    trainer = Trainer(params, alphabet)
    trainer.fit(train, evaluation, seed=0)
    return params, train, trainer.export(str(out / "model" / "export")), out


def test_nfd_labels_train_with_an_nfc_alphabet_under_the_default(nfd_training):
    params, train, export, _ = nfd_training
    code = Alphabet.from_file(params.lookup_alphabet_file).lookup[NFC_U]
    assert len(train) == 64 and all(e.sample.symbols[-1] == NFC_U and e.codes[-1] == code for e in train)
    # The export records the form, so evaluation and prediction compare text the training's way.
    recorded = json.loads((Path(export) / "params.json").read_text(encoding="utf-8"))
    assert recorded["unicode_normalization"] == "NFC"


def test_nfd_labels_are_unknown_symbols_under_none(nfd_training):
    from tf_crnn.config import Params
    from tf_crnn.data import load_split

    params, _, _, _ = nfd_training
    raw = Params.from_dict({**params.to_dict(), "unicode_normalization": "none"})
    alphabet = Alphabet.from_file(raw.lookup_alphabet_file, raw.unicode_normalization)
    with pytest.raises(AlphabetError) as e:
        load_split(raw.csv_files_train, raw, alphabet, "train", progress=False)
    message = str(e.value)
    assert "64 label symbol(s) not in the alphabet" in message
    assert f"{raw.csv_files_train[0]}:1: symbol {NFD_U!r} (U+0075 U+0308) is not in the alphabet" in message
    assert "another Unicode normalisation form" in message and "unicode_normalization: NFC" in message


def test_evaluation_reads_labels_in_the_models_form(nfd_training, tmp_path):
    from tf_crnn.evaluation import prepare
    from tf_crnn.loader import PredictionModel

    params, _, export, _ = nfd_training
    prepared = prepare(export, params.csv_files_eval, progress=False)
    assert prepared.model.normalization == "NFC"
    assert len(prepared.samples) == 16 and not prepared.unknown_symbols
    assert all(s.symbols[-1] == NFC_U for s in prepared.samples)

    # The model's params decide: the same export told to compare as written finds the NFD symbol unknown.
    as_written = tmp_path / "as_written"
    shutil.copytree(export, as_written)
    recorded = json.loads((as_written / "params.json").read_text(encoding="utf-8"))
    (as_written / "params.json").write_text(json.dumps({**recorded, "unicode_normalization": "none"}))
    prepared = prepare(str(as_written), params.csv_files_eval, progress=False)
    assert {u.symbol for u in prepared.unknown_symbols} == {NFD_U} and len(prepared.unknown_symbols) == 16

    # An export written before the key existed gets NFC (docs/guide/data.md says why).
    del recorded["unicode_normalization"]
    (as_written / "params.json").write_text(json.dumps(recorded))
    assert PredictionModel(str(as_written)).normalization == "NFC"


def test_an_nfd_lexicon_decodes_with_an_nfc_model(nfd_training, tmp_path):
    from tf_crnn.decoding import Lexicon, default_decoding
    from tf_crnn.loader import PredictionModel

    params, train, export, _ = nfd_training
    words = sorted({e.sample.text for e in train})
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("".join(unicodedata.normalize("NFD", w) + "\n" for w in words), encoding="utf-8")
    assert NFC_U not in lexicon.read_text(encoding="utf-8")
    model = PredictionModel(export)
    read = Lexicon.from_file(str(lexicon), model.alphabet.lookup, "|", model.normalization)
    assert read.skipped == 0 and len(read) == len(words) and all(w[-1] == NFC_U for w in read.words)
    # Compared as written, no NFD word can be emitted by the NFC model.
    with pytest.raises(ValueError, match="no word made only of alphabet symbols"):
        Lexicon.from_file(str(lexicon), model.alphabet.lookup, "|", "none")
    predictions = model.predict([e.sample.image_path for e in train[:4]],
                                decoding=default_decoding(model.params, lexicon=str(lexicon)))
    assert all(p.text in words for p in predictions)


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_an_alphabet_with_both_forms_of_one_symbol_is_ambiguous(tmp_path, form):
    table = tmp_path / "both.json"
    table.write_text(json.dumps({"a": 1, NFC_U: 2, NFD_U: 3}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(AlphabetError) as e:
        Alphabet.from_file(table, form)
    message = str(e.value)
    assert message.startswith(f"{table}: keys {NFC_U!r} (U+00FC, code 2) and {NFD_U!r} (U+0075 U+0308, code 3)")
    assert f"in Unicode {form}" in message and "unicode_normalization: none" in message


def test_an_alphabet_with_both_forms_is_two_symbols_under_none(tmp_path):
    table = tmp_path / "both.json"
    table.write_text(json.dumps({"a": 1, NFC_U: 2, NFD_U: 3}, ensure_ascii=False), encoding="utf-8")
    alphabet = Alphabet.from_file(table, "none")
    assert alphabet.lookup == {"a": 1, NFC_U: 2, NFD_U: 3}


def test_alphabet_symbols_are_put_in_the_form(tmp_path):
    table = tmp_path / "nfd.json"
    table.write_text(json.dumps({"a": 1, NFD_U: 2}, ensure_ascii=False), encoding="utf-8")
    assert Alphabet.from_file(table).lookup == {"a": 1, NFC_U: 2}
    assert Alphabet.from_file(table, "NFD").lookup == {"a": 1, NFD_U: 2}


def test_read_csv_normalizes_each_symbol(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text(f"a.png;|{NFD_U}|b|\nb.png;|{NFC_U}|\n", encoding="utf-8")
    assert [s.symbols for s in read_csv(csv)] == [(NFC_U, "b"), (NFC_U,)]
    assert [s.symbols for s in read_csv(csv, normalization="NFD")] == [(NFD_U, "b"), (NFD_U,)]
    assert [s.symbols for s in read_csv(csv, normalization="none")] == [(NFD_U, "b"), (NFC_U,)]


def test_config_offers_the_forms_and_refuses_others(tmp_path):
    from tf_crnn.config import UNICODE_NORMALIZATION_NAMES, ConfigError, Params

    assert UNICODE_NORMALIZATION_NAMES == ("NFC", "NFD", "none")
    assert Params().unicode_normalization == "NFC"
    with pytest.raises(ConfigError, match="unicode_normalization must be 'NFC', 'NFD' or 'none'"):
        Params(unicode_normalization="NFKC")


def test_alphabet_build_cli_compares_in_the_form(tmp_path):
    from conftest import tf_crnn

    csv = tmp_path / "x.csv"
    csv.write_text(f"a.png;|{NFD_U}|b|\nb.png;|{NFC_U}|\n", encoding="utf-8")
    built = tf_crnn("alphabet", "build", str(csv), "-o", str(tmp_path / "t.json"))
    assert built.returncode == 0, built.stderr
    assert json.loads((tmp_path / "t.json").read_text(encoding="utf-8")) == {"b": 1, NFC_U: 2}
    built = tf_crnn("alphabet", "build", str(csv), "-o", str(tmp_path / "n.json"), "--unicode-normalization", "none")
    assert built.returncode == 0, built.stderr
    assert set(json.loads((tmp_path / "n.json").read_text(encoding="utf-8"))) == {"b", NFC_U, NFD_U}
