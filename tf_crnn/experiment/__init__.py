"""Running experiments: what turns a config into recorded trainings and evaluations.

- :mod:`~tf_crnn.experiment.experiments`: the Sacred experiments ``crnn`` (a training) and ``crnn-evaluate``;
- :mod:`~tf_crnn.experiment.sweep`: hyperparameter sweeps, an Optuna study whose trials are runs of ``crnn``;
- :mod:`~tf_crnn.experiment.folds`: cross-fold training, k runs of ``crnn`` on k splits of the training data;
- :mod:`~tf_crnn.experiment.epoch_callbacks`: the trainer callbacks of a run (logging an epoch to Sacred, a
  sweep's pruning);
- :mod:`~tf_crnn.experiment.sources`: ``init_from`` resolved to a folder before a training (a run's export).

Runs are stored and read by :mod:`tf_crnn.tracking`, which never imports this package; the training itself
(:mod:`tf_crnn.trainer`) knows nothing of Sacred: results reach the run through callbacks.
"""
