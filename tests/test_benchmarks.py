"""The benchmarks run at a tiny size, so they cannot rot (figures come from full runs, see docs/benchmarks/)."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_vs_plain_keras_runs_both_trainings_in_abba_order(digits_data, tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/vs_plain_keras.py", "--setup", "word", "--csv",
         str(digits_data / "data" / "train" / "labels.csv"), "--limit", "32", "--epochs", "1", "--rounds", "1",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CRNN_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert len(figures["plain"]) == 2 and len(figures["tf-crnn"]) == 2
    assert all(v > 0 for v in figures["plain"] + figures["tf-crnn"])
    assert "ratio tf-crnn / plain" in result.stdout and "machine:" in result.stdout


def test_augmentation_cost_measures_each_operation_against_none_in_abba_order(digits_data, tmp_path):
    out = tmp_path / "figures.json"
    csv = str(digits_data / "data" / "train" / "labels.csv")
    result = subprocess.run(
        [sys.executable, "benchmarks/augmentation_cost.py", "--lines", csv, "--words", csv, "--images", "16",
         "--passes", "1", "--ops", "rotation", "light", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) == {"lines", "words"} and all(set(f) == {"rotation", "light"} for f in figures.values())
    for setup in figures.values():
        for op in setup.values():
            assert len(op["none"]) == 2 and len(op["with"]) == 2 and all(r > 0 for r in op["none"] + op["with"])
    assert "machine:" in result.stdout and "command:" in result.stdout and "rotation 1" in result.stdout


@pytest.mark.slow
def test_deploy_formats_scores_and_times_every_format(digits_data, tmp_path):
    from conftest import tiny_params

    from tf_crnn.alphabet import Alphabet
    from tf_crnn.trainer import Trainer

    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "model"), mixed_precision="off")
    export = Trainer(params, Alphabet.from_file(params.lookup_alphabet_file)).export(str(tmp_path / "export"))
    out = tmp_path / "figures.json"
    csv = str(digits_data / "data" / "eval" / "labels.csv")
    result = subprocess.run(
        [sys.executable, "benchmarks/deploy_formats.py", "--model", export, "--csv", csv, "--limit", "6",
         "--samples", "4", "--batch1-images", "3", "--rounds", "1", "--out", str(tmp_path / "models"),
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["format"] for r in rows] == ["SavedModel", "TFLite fp32", "TFLite fp16", "TFLite dynamic",
                                           "TFLite int8", "ONNX"]
    assert all(r["images"] == 6 and 0 <= r["cer"] and r["bytes"] > 0 and r["images_per_second_batch_1"] > 0
               and r["images_per_second_batch_64"] > 0 for r in rows)
    # An untrained float32 CRNN: ONNX, batched and padded as the SavedModel, scores exactly as it.
    assert rows[5]["cer"] == rows[0]["cer"]
    assert "| format | file size | CER |" in result.stdout and "machine:" in result.stdout
    assert "aim int8 file <= 30% of fp32" in result.stdout


def test_recurrent_masking_times_the_masked_unmasked_and_hoisted_paths():
    result = subprocess.run(
        [sys.executable, "benchmarks/recurrent_masking.py", "--shapes", "word", "--policies", "float32",
         "--steps", "2", "--warmup", "1", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(row for row in result.stdout.splitlines() if row.startswith("word (batch 32"))
    for mode in ("masked", "unmasked", "hoisted", "hoisted-bf16"):
        assert f" {mode} " in line and "ms/step" in line
    assert "hoisted (hoisted loop)" in line and "machine:" in result.stdout


@pytest.mark.slow
def test_recipe_budget_gives_each_variant_the_epochs_its_calibration_fits_in_the_budget(digits_data, mongo_url,
                                                                                       tmp_path):
    from conftest import train_env, write_config

    config = write_config(tmp_path, digits_data, n_epochs=1)
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, "benchmarks/recipe_budget.py", "--budget-minutes", "0.75", "--config", str(config),
         "--work", str(work), "--set", "seed=3", "--variant", "base=", "--variant",
         "small=rnn_units=[8],cnn_features_list=[4,8]", "--epochs", "small=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=train_env(TF_CRNN_MONGO_URL=mongo_url))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {row["variant"]: row for row in json.loads((work / "summary.json").read_text())}
    base, small = rows["base"], rows["small"]
    # base: n_epochs = 2 + floor((budget - W) / E) from its 2-epoch calibration run, a run of its own.
    wall_s, epoch_s = base["calibration"]["wall_s"], base["calibration"]["epoch_s"]
    assert base["n_epochs"] == max(1, 2 + math.floor((45 - wall_s) / epoch_s))
    assert base["calibration"]["run_id"] not in (None, base["run_id"])
    assert len(base["cer_per_epoch"]) == base["n_epochs"]
    assert small["n_epochs"] == 2 and small["calibration"] is None and len(small["cer_per_epoch"]) == 2
    assert small["weights"] < base["weights"]
    assert small["updates"] == ["seed=3", "rnn_units=[8]", "cnn_features_list=[4,8]"]
    assert all(row["cer"] == row["cer_per_epoch"][-1] and row["best_cer"] == min(row["cer_per_epoch"])
               for row in rows.values())
    assert "machine:" in result.stdout and "best CER %" in result.stdout


@pytest.mark.slow
def test_startup_times_the_first_and_second_run_and_one_without_the_cache(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/startup.py", "--images", "20", "--repeat", "1",
                             "--data", str(tmp_path / "data")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("first", "second", "without cache"):
        seconds = re.findall(rf"^{name} *: ([0-9.]+) s to the first step \(check cache: 22 image facts, 22 digests\)$",
                             result.stdout, re.M)  # 20 training + 2 eval images, all remembered by the first run
        assert len(seconds) == 1 and float(seconds[0]) > 0, result.stdout
    assert "machine:" in result.stdout and "command:" in result.stdout


@pytest.mark.slow
def test_compiled_data_measures_files_and_shards_in_aba_order(tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/compiled_data.py", "--images", "40", "--batch", "16", "--train-steps", "1",
         "--shard-size", "16", "--data", str(tmp_path / "data"), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CRNN_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert [len(figures[arm]["pipeline"]) for arm in ("files", "shards")] == [2, 1]
    assert all(v > 0 for arm in ("files", "shards") for v in figures[arm]["pipeline"] + figures[arm]["training"])
    assert figures["disk"]["files"]["files"] == 41 and figures["disk"]["shards"]["files"] == 3 + 2
    assert len(figures["storage"]) == 3 and "machine:" in result.stdout and "command:" in result.stdout


@pytest.mark.slow
def test_few_lines_scores_every_cell_on_the_same_held_out_lines_and_continues_a_stopped_run(digits_data, tmp_path):
    from conftest import train_tiny_export, write_config

    export = train_tiny_export(digits_data, tmp_path)
    config = write_config(tmp_path, digits_data)
    book = digits_data / "data" / "train" / "labels.csv"  # 64 lines: one book
    work = tmp_path / "work"
    command = [sys.executable, "benchmarks/few_lines.py", "--model", export, "--csv", str(book), "--book-per-csv",
               "--config", str(config), "--work", str(work), "-n", "0", "4", "--draws", "1", "--steps", "2",
               "--steps-per-epoch", "2", "--batch", "4"]
    env = {**os.environ, "TF_CRNN_HOME": str(tmp_path / "home")}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    assert [(r["n"], r["start"]) for r in rows] == [(0, "model"), (4, "model"), (4, "random")]
    assert {r["lines"] for r in rows} == {64 - 4}  # the pool of max(N) = 4 lines is never scored
    assert rows[0]["train_seconds"] == 0 and all(r["train_seconds"] > 0 for r in rows[1:])
    assert all(0 <= r["cer"] for r in rows) and "| 4 | random | 1 |" in result.stdout and "machine:" in result.stdout
    trained = (work / "cells" / "labels" / "n4_d0_model" / "train.csv").read_text().splitlines()
    held_out = (work / "heldout" / "labels.csv").read_text().splitlines()
    assert len(trained) == 4 and not set(trained) & set(held_out)
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "0 cell(s) to measure, 3 already in" in again.stdout


@pytest.mark.slow
def test_scale_measures_every_size_and_the_smallest_again_from_files_and_shards(tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/scale.py", "--data", str(tmp_path / "data"), "--sizes", "24", "48",
         "--steps", "1", "--epochs", "2", "--batch", "4", "--shard-size", "16", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert list(figures) == ["files 24", "files 48", "files 24 (again)", "shards 24", "shards 48"]
    for name, f in figures.items():
        assert f["first_ready_s"] > 0 and f["second_ready_s"] > 0 and f["peak_rss_mb"] > 100, (name, f)
        assert len(f["epoch_images_per_s"]) == 2 and f["steady_images_per_s"] == f["epoch_images_per_s"][1]
    assert figures["shards 48"]["bytes"] > figures["shards 24"]["bytes"] > 0
    assert (tmp_path / "data" / "train" / "first_24.csv").read_text().count("\n") == 24
    assert "projection to 16,000,000 images" in result.stdout and "machine:" in result.stdout
    result = subprocess.run([sys.executable, "benchmarks/scale.py", "--data", str(tmp_path / "data"), "--sizes", "48",
                             "--data-path", "24"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CRNN_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = re.findall(r"^  (read|check|fingerprint): [0-9.]+ s, peak RSS [0-9,]+ MB$", result.stdout, re.M)
    assert steps == ["read", "check", "fingerprint"], result.stdout
