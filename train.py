"""Train a CRNN as a Sacred experiment: ``python train.py with config_template.json [key=value ...]``.

Thin entry point; the experiment is :data:`tf_crnn.experiment.ex`.
"""
from tf_crnn.experiment import ex

if __name__ == "__main__":
    ex.run_commandline()
