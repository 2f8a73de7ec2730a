"""Weights are copied by variable path, never by position: an export's model.json names each saved variable."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from conftest import ROOT, tiny_params

FORWARD = "crnn/bilstm1/forward_lstm1/lstm_cell/kernel"
BACKWARD = "crnn/bilstm1/backward_lstm1/lstm_cell/kernel"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny CRNN (random weights) and its SavedModel export; the weights by path."""
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.export import export_saved_model
    from tf_crnn.model import build_crnn, weight_paths

    out = tmp_path_factory.mktemp("paths")
    params = tiny_params(out)
    alphabet = Alphabet.from_file(ROOT / "data" / "alphabets" / "digits.json")
    model = build_crnn(params, alphabet.num_classes)
    export = export_saved_model(model, params, alphabet, str(out / "export"))
    return export, {path: v.numpy().copy() for path, v in weight_paths(model.variables).items()}


def loaded(export) -> dict[str, np.ndarray]:
    from tf_crnn.loader import PredictionModel
    from tf_crnn.model import weight_paths

    model, _ = PredictionModel(export).crnn()
    return {path: v.numpy() for path, v in weight_paths(model.variables).items()}


def test_the_export_names_its_variables_and_the_loader_follows_the_names(exported, tmp_path):
    export, weights = exported
    info = json.loads(open(f"{export}/model.json").read())
    assert info["dtype_policy"] == "float32"
    assert {v["path"] for v in info["variables"]} >= set(weights)
    assert weights[FORWARD].shape == weights[BACKWARD].shape and not np.array_equal(weights[FORWARD], weights[BACKWARD])
    again = loaded(export)
    assert again.keys() == weights.keys() and all(np.array_equal(again[p], weights[p]) for p in weights)

    # A copy whose record swaps the names of two tensors of equal shape: each value goes where its name says.
    # Matched by position (the order of the saved variables), the forward LSTM would get its old kernel back.
    swapped = tmp_path / "swapped"
    shutil.copytree(export, swapped)
    for entry in info["variables"]:
        entry["path"] = {FORWARD: BACKWARD, BACKWARD: FORWARD}.get(entry["path"], entry["path"])
    (swapped / "model.json").write_text(json.dumps(info))
    crossed = loaded(swapped)
    assert np.array_equal(crossed[FORWARD], weights[BACKWARD]) and np.array_equal(crossed[BACKWARD], weights[FORWARD])
    assert all(np.array_equal(crossed[p], weights[p]) for p in weights if p not in (FORWARD, BACKWARD))


def test_a_path_the_network_lacks_is_named(exported, tmp_path):
    from tf_crnn.model import WeightMismatch

    export, _ = exported
    renamed = tmp_path / "renamed"
    shutil.copytree(export, renamed)
    info = json.loads((renamed / "model.json").read_text())
    for entry in info["variables"]:
        entry["path"] = entry["path"].replace("/conv2/", "/conv9/")
    (renamed / "model.json").write_text(json.dumps(info))
    with pytest.raises(WeightMismatch) as caught:
        loaded(renamed)
    message = str(caught.value)
    assert f"{renamed} cannot be rebuilt as the CRNN its params.json describes" in message
    assert "missing in the source: crnn/conv2/kernel" in message and "not in the network: crnn/conv9/kernel" in message

    # A record that does not describe the SavedModel (one variable fewer) is refused, not half applied.
    del info["variables"][0]
    (renamed / "model.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="model.json does not describe this SavedModel"):
        loaded(renamed)


def test_an_export_without_model_json_loads_checked_by_name_and_shape(exported, tmp_path, caplog):
    """Exports of tf-crnn 0.4 have no model.json: their saved order, checked by each variable's last name part."""
    export, weights = exported
    old = tmp_path / "old"
    shutil.copytree(export, old)
    (old / "model.json").unlink()
    with caplog.at_level(logging.WARNING, logger="tf_crnn.loader"):
        again = loaded(old)
    assert all(np.array_equal(again[p], weights[p]) for p in weights)
    assert "has no model.json" in caplog.text and "re-export it" in caplog.text
    # Other settings than the export's: the first pair that does not fit is named.
    params = json.loads((old / "params.json").read_text())
    (old / "params.json").write_text(json.dumps({**params, "cnn_batch_norm": [True, True]}))
    with pytest.raises(ValueError, match=r"has no model.json and its variable crnn/bias:0 \(8,\) does not pair with "
                                         r"crnn/bn1/gamma"):
        loaded(old)
