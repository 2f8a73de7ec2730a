"""Writes this folder's training checkpoint with the tf_crnn on PYTHONPATH (made with tf-crnn 0.4.0 at commit f573b8b).

Kept so a checkpoint of that layout can be made again; tests/test_callbacks.py resumes from it with
today's code (``test_a_checkpoint_of_0_4_resumes``). The layout then: ``best_cer`` at the top of the
checkpoint (a variable of the trainer), the callbacks' counters under their names, ``lr_scale``.

    cd /tmp && PYTHONPATH=/path/to/tf-crnn-0.4.0 python /path/to/tests/data/checkpoint_0_4/make_checkpoint.py

A tiny model (20,171 weights: 248 KB with Adam's two moments), trained 30 epochs on the rendered
digits the tests use (the same generator and seeds as ``tests/conftest.py``'s ``digits_data``), so that
its best eval CER (in expected.json) is neither 1.0 nor the infinity a new training starts from.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
EPOCHS = 30
#: The settings the test rebuilds the model with (data paths and output folder are the test's).
SETTINGS = dict(input_shape=[32, 32], max_width=256, cnn_features_list=[8, 16], cnn_kernel_size=[3, 3],
                cnn_pool_size=[[2, 2], [2, 2]], cnn_batch_norm=[False, False], rnn_units=[16],
                train_batch_size=16, eval_batch_size=16, learning_rate=1e-2, learning_decay_steps=1000,
                early_stopping_patience=30, lr_plateau_patience=30, keep_checkpoints=1)


def main() -> None:
    import tf_crnn
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.config import Params
    from tf_crnn.data import load_split
    from tf_crnn.datasets.synthetic import generate_numbers
    from tf_crnn.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_numbers(root / "data" / "train", 64, seed=1, min_length=2, max_length=5, workers=1, progress=False)
        generate_numbers(root / "data" / "eval", 16, seed=2, min_length=2, max_length=5, workers=1, progress=False)
        params = Params(csv_files_train=[str(root / "data" / "train" / "labels.csv")],
                        csv_files_eval=[str(root / "data" / "eval" / "labels.csv")],
                        lookup_alphabet_file=str(ROOT / "data" / "alphabets" / "digits.json"),
                        output_model_dir=str(root / "out"), n_epochs=EPOCHS, **SETTINGS)
        alphabet = Alphabet.from_file(params.lookup_alphabet_file)
        train = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
        evaluation = load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
        trainer = Trainer(params, alphabet)
        results = trainer.fit(train, evaluation, seed=0)
        target = HERE / "checkpoints"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(root / "out" / "checkpoints", target)
        # The record names the checkpoint by its absolute path too; keep only the relative name.
        name = f'"ckpt-{EPOCHS}"'
        (target / "checkpoint").write_text(f"model_checkpoint_path: {name}\nall_model_checkpoint_paths: {name}\n")
        stopping = next(cb for cb in trainer.callbacks if cb.name == "early_stopping")
        commit = subprocess.run(["git", "-C", str(Path(tf_crnn.__file__).parent), "rev-parse", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        expected = {"written_by": f"tf_crnn {tf_crnn.__version__} at {commit}", "settings": SETTINGS,
                    "epoch": int(trainer.epoch.numpy()), "best_cer": float(trainer.best_cer.numpy()),
                    "eval_cer": [r.cer for r in results],
                    "early_stopping": {"best": float(stopping.best.numpy()), "wait": int(stopping.wait.numpy())},
                    "lr_scale": float(trainer.lr_scale.numpy())}
        (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
