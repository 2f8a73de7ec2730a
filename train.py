"""Train a CRNN as a Sacred experiment: ``python train.py with config_template.json [key=value ...]``.

Thin entry point (``tf-crnn train with ...`` is the same, exit codes included:
:func:`tf_crnn.cli.train.run_training`); the experiment is
:data:`tf_crnn.experiment.experiments.ex`.
"""
import sys

from tf_crnn._util import quiet_tensorflow

if __name__ == "__main__":
    quiet_tensorflow(sys.argv)  # before TensorFlow loads
    from tf_crnn.cli.train import run_training

    sys.exit(run_training(sys.argv))
