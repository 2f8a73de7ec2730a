"""The benchmarks run at a tiny size, so they cannot rot (figures come from full runs, see the README)."""
from __future__ import annotations

import json
import os
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
