"""Where runs are recorded: MongoDB through Sacred, and what keeps that record whole.

- :mod:`~tf_crnn.tracking.urls`: which database (config, ``TF_CRNN_MONGO_URL``, embedded), password redaction;
- :mod:`~tf_crnn.tracking.server`: the embedded SecantusDB server;
- :mod:`~tf_crnn.tracking.observer`: the Sacred MongoDB observer that survives outages;
- :mod:`~tf_crnn.tracking.run_records`: ``run.json`` of an output folder, resumed and dead runs, output folder checks;
- :mod:`~tf_crnn.tracking.output_lock`: one training at a time per output folder;
- :mod:`~tf_crnn.tracking.run_import`: a run's local record (written during an outage) into MongoDB;
- :mod:`~tf_crnn.tracking.board`: Omniboard on that database;
- :mod:`~tf_crnn.tracking.runs`: reading runs back (list, show, compare, artifacts);
- :mod:`~tf_crnn.tracking.provenance`: code version, data identity and environment of a run.

Running experiments (the Sacred experiments, sweeps, cross-fold training) is :mod:`tf_crnn.experiment`'s job;
nothing here imports it, nor the trainer's internals.
"""
