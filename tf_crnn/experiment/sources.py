"""Where a training starts from: ``init_from`` turned into a folder before the training starts.

Fine-tuning (:mod:`tf_crnn.finetune`) receives a folder or a checkpoint: an export folder, a
checkpoint folder or one checkpoint's prefix. Naming a recorded run instead (``init_from=run:ID`` or
the integer ID) is resolved here, in the experiment layer, which knows the run database: the run's
``export.zip`` artifact is downloaded once into ``$TF_CRNN_HOME/models`` and its folder handed on
(:func:`tf_crnn.tracking.runs.download_export`). A model shipped with tf-crnn (``init_from=pretrained:NAME``)
is its folder inside the installed package (:func:`tf_crnn.pretrained.locate`). Loads TensorFlow (through
:mod:`tf_crnn.finetune`): imported when a training starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .._util import parse_run_id
from ..finetune import FinetuneError
from ..pretrained import PREFIX, PretrainedError, is_reference, locate
from ..tracking.runs import RunsError, download_export
from ..tracking.urls import DEFAULT_DB_NAME


@dataclass(frozen=True)
class InitSource:
    """What ``init_from`` names, as fine-tuning takes it.

    Attributes:
        path: an export folder, a checkpoint folder or a checkpoint prefix (:func:`tf_crnn.finetune.load_source`).
        origin: where ``path`` came from when it is not what the config named, for the run's record
            (``info.init_from``): ``{"source": "run", "run_id", "database"}`` for a run, ``{"source": "pretrained",
            "name"}`` for a shipped model; None for a folder.
    """

    path: str
    origin: dict | None = None


def run_reference(init_from) -> int | str | None:
    """The run id ``init_from`` names (``run:ID`` or an int; digits become an int), or None for a folder."""
    if isinstance(init_from, int) and not isinstance(init_from, bool):
        return init_from
    if isinstance(init_from, str) and init_from.startswith("run:"):
        return parse_run_id(init_from[len("run:"):].strip())
    return None


def resolve_init_from(init_from, mongo_url: str | None = None, mongo_db_name: str | None = None) -> InitSource:
    """The folder (or checkpoint) ``init_from`` names; a run's export is downloaded (once, then cached).

    Args:
        init_from: an export folder, a checkpoint folder or prefix, ``run:ID`` or an int run id, or
            ``pretrained:NAME`` (:attr:`tf_crnn.config.Params.init_from`).
        mongo_url, mongo_db_name: the database of a run (resolved as training resolves it).

    Raises:
        tf_crnn.finetune.FinetuneError: no such run, a run without export, or no shipped model of that name (the
            message names ``init_from``, and the shipped models).
        tf_crnn.tracking.urls.TrackingError: the database of a run cannot be reached.
    """
    if is_reference(init_from):
        try:
            return InitSource(locate(init_from), {"source": "pretrained", "name": init_from[len(PREFIX):]})
        except PretrainedError as e:
            raise FinetuneError(f"init_from={init_from!r}: {e}") from None
    run_id = run_reference(init_from)
    if run_id is None:
        return InitSource(os.fspath(init_from))
    db_name = mongo_db_name or DEFAULT_DB_NAME
    try:
        path = download_export(run_id, mongo_url, db_name)
    except RunsError as e:
        raise FinetuneError(f"init_from={init_from!r}: {e}") from None
    return InitSource(path, {"source": "run", "run_id": run_id, "database": db_name})
