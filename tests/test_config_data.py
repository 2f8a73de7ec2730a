"""Config validation and the checks that run before training (bad images, infeasible labels)."""
import json

import numpy as np
import pytest
from conftest import ROOT, tiny_params
from PIL import Image

from tf_crnn.alphabet import Alphabet, AlphabetError
from tf_crnn.config import ConfigError, Params
from tf_crnn.data import DataError, batch_count, load_split, make_dataset, padding_fraction


def test_unknown_config_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'n_epochs'"):
        Params.from_dict({"n_epoch": 3})


def test_inconsistent_conv_blocks_rejected():
    with pytest.raises(ConfigError, match="cnn_pool_size has 1 entries"):
        Params(cnn_features_list=[8, 8], cnn_kernel_size=[3, 3], cnn_pool_size=[[2, 2]], cnn_batch_norm=[True, True])


def test_template_and_experiment_configs_are_valid():
    for name in ("config_template.json", "experiments/fraktur.json"):
        values = json.loads((ROOT / name).read_text())
        values.pop("generate_data", None)
        Params.from_dict(values)


def _image(path, width, height=32):
    Image.fromarray(np.full((height, width), 200, np.uint8)).save(path)
    return path.name


@pytest.fixture
def bad_set(tmp_path):
    _image(tmp_path / "ok.png", 64)
    _image(tmp_path / "narrow.png", 8)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = ["ok.png;|1|2|", "missing.png;|3|", "corrupt.png;|4|", "narrow.png;|1|2|3|4|5|"]
    (tmp_path / "set.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path


def test_bad_samples_are_reported_with_file_and_line(bad_set):
    params = tiny_params(bad_set, input_shape=[32, 8])
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with pytest.raises(DataError) as err:
        load_split([str(bad_set / "set.csv")], params, alphabet, "train", progress=False)
    message = str(err.value)
    assert "3 unusable row(s)" in message
    assert "set.csv:2:" in message and "missing image file" in message
    assert "set.csv:3:" in message and "cannot decode image" in message
    assert "set.csv:4: label of 5 symbols needs more CTC time steps than the 2" in message
    assert "set.csv:1" not in message


def test_skip_mode_keeps_good_rows(bad_set):
    params = tiny_params(bad_set, input_shape=[32, 8], on_bad_sample="skip")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split([str(bad_set / "set.csv")], params, alphabet, "train", progress=False)
    assert [(e.sample.line, e.codes, e.width) for e in entries] == [(1, (2, 3), 64)]


def test_unknown_symbol_stops_before_training(tmp_path):
    _image(tmp_path / "a.png", 64)
    (tmp_path / "set.csv").write_text("a.png;|1|A|\n", encoding="utf-8")
    params = tiny_params(tmp_path)
    with pytest.raises(AlphabetError, match=r"set.csv:1: symbol 'A'"):
        load_split([str(tmp_path / "set.csv")], params, Alphabet.from_file(params.lookup_alphabet_file), "train")


def test_pipeline_batches_shapes_and_padding(digits_data):
    params = tiny_params(digits_data)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    seen = set()
    for batch in make_dataset(entries, params, 8, training=True, seed=0):
        images, widths = batch["images"].numpy(), batch["widths"].numpy()
        assert images.shape[1:] == (32, widths.max(), 1) and images.dtype == np.float32
        assert -1.0 <= images.min() and images.max() <= 1.0
        for i, w, n, label in zip(batch["index"].numpy(), widths, batch["label_lengths"].numpy(),
                                  batch["labels"].numpy()):
            assert w == entries[i].width and tuple(label[:n]) == entries[i].codes
            assert (images[list(batch["index"].numpy()).index(i), :, w:] == 0).all()
            seen.add(int(i))
    assert seen == set(range(len(entries)))
    assert 0.0 <= padding_fraction(entries, params, 8) < 0.5


@pytest.mark.parametrize("batch_size", [5, 8, 16, 64])
def test_batch_count_is_the_number_of_batches_the_pipeline_makes(digits_data, batch_size):
    params = tiny_params(digits_data)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    for training in (True, False):
        made = sum(1 for _ in make_dataset(entries, params, batch_size, training=training, seed=0))
        assert batch_count(entries, batch_size) == made
    if batch_size == 5:  # width buckets each end with a partial batch: more than len / batch_size
        assert batch_count(entries, batch_size) > -(-len(entries) // batch_size)


def test_image_cache_gives_the_batches_of_the_uncached_pipeline(digits_data):
    from tf_crnn.trainer import deterministic

    params = tiny_params(digits_data, augmentation="none")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split(params.csv_files_train, params, alphabet, "train", progress=False)

    def epochs(cache: bool) -> list[list[dict]]:
        with deterministic(0):  # tf.data's parallel map keeps its order (as deterministic=True runs have it)
            ds = make_dataset(entries, params, 8, training=True, seed=3, cache=cache)
            return [[{k: v.numpy() for k, v in batch.items()} for batch in ds] for _ in range(2)]

    plain, cached = epochs(False), epochs(True)
    assert [b["index"].tolist() for b in plain[0]] != [b["index"].tolist() for b in plain[1]]  # reshuffled
    for plain_epoch, cached_epoch in zip(plain, cached):
        assert len(plain_epoch) == len(cached_epoch)
        for a, b in zip(plain_epoch, cached_epoch):
            assert a["index"].tolist() == b["index"].tolist()
            np.testing.assert_array_equal(a["images"], b["images"])
            np.testing.assert_array_equal(a["labels"], b["labels"])


def test_image_cache_auto_follows_the_memory_budget(digits_data):
    from tf_crnn.data import cache_bytes, use_image_cache

    params = tiny_params(digits_data)
    entries = load_split(params.csv_files_train, params, Alphabet.from_file(params.lookup_alphabet_file), "train",
                         progress=False)
    needed = cache_bytes(entries, params)
    assert needed == 4 * 32 * sum(e.width for e in entries)
    assert use_image_cache(Params(**{**params.to_dict(), "cache_images_mb": needed // 2**20 + 1}), entries)
    assert not use_image_cache(Params(**{**params.to_dict(), "cache_images_mb": 0}), entries)
    assert use_image_cache(Params(**{**params.to_dict(), "cache_images": "on", "cache_images_mb": 0}), entries)
    assert not use_image_cache(Params(**{**params.to_dict(), "cache_images": "off"}), entries)
    with pytest.raises(ConfigError, match="cache_images must be"):
        Params(**{**params.to_dict(), "cache_images": "yes"})
