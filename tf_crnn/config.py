"""Params: every setting of a training, typed and validated, to/from dict and JSON; every choice list.

The key names are those of the original tf-crnn (``csv_files_train``,
``output_model_dir``, ``lookup_alphabet_file``, ...) so existing config files
keep working. The Sacred experiment ``crnn`` (:mod:`tf_crnn.experiment.experiments`)
registers :func:`Params.defaults` as its config, so ``with config.json`` and
``with key=value`` override these.

Each choice a setting or a command-line option offers is a ``Literal`` type
here, and its values (``get_args``) are what :meth:`Params.validate` accepts
and what the ``tf-crnn`` commands offer as ``choices``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .textfiles import TextFileError, load_json

Optimizer = Literal["adam", "adamw", "rmsprop", "sgd"]
Strategy = Literal["auto", "default", "one_device", "mirrored", "multi_worker"]
Decoding = Literal["greedy", "beam_search"]
MixedPrecision = Literal["auto", "on", "off", "float16", "bfloat16"]
OnBadSample = Literal["error", "skip"]
DataFingerprint = Literal["content", "stat", "off"]
CacheImages = Literal["auto", "on", "off"]
#: ``unicode_normalization``: the form labels, alphabet symbols and lexicons are compared in (``none``: as written).
UnicodeNormalization = Literal["NFC", "NFD", "none"]
#: ``init_alphabet``: the alphabet of a fine-tuning (see :class:`Params`).
InitAlphabet = Literal["table", "union", "new"]
#: ``learning_rate_schedule`` (built in :mod:`tf_crnn.schedules`, table ``SCHEDULES``).
LearningRateSchedule = Literal["exponential", "cosine", "one_cycle"]
#: ``tf-crnn prepare`` input formats (readers in :mod:`tf_crnn.datasets.formats`).
PrepareFormat = Literal["gt-pairs", "iiit5k", "icdar", "mjsynth", "tsv", "filename", "lmdb", "page", "alto"]

OPTIMIZER_NAMES: tuple[str, ...] = get_args(Optimizer)
STRATEGY_NAMES: tuple[str, ...] = get_args(Strategy)
DECODING_NAMES: tuple[str, ...] = get_args(Decoding)
MIXED_PRECISION_NAMES: tuple[str, ...] = get_args(MixedPrecision)
ON_BAD_SAMPLE_NAMES: tuple[str, ...] = get_args(OnBadSample)
DATA_FINGERPRINT_NAMES: tuple[str, ...] = get_args(DataFingerprint)
CACHE_IMAGES_NAMES: tuple[str, ...] = get_args(CacheImages)
UNICODE_NORMALIZATION_NAMES: tuple[str, ...] = get_args(UnicodeNormalization)
LEARNING_RATE_SCHEDULE_NAMES: tuple[str, ...] = get_args(LearningRateSchedule)
INIT_ALPHABET_NAMES: tuple[str, ...] = get_args(InitAlphabet)
PREPARE_FORMAT_NAMES: tuple[str, ...] = get_args(PrepareFormat)
#: ``tf-crnn convert`` formats and TFLite quantizations (converters in :mod:`tf_crnn.convert`).
DeployFormat = Literal["tflite", "onnx"]
Quantization = Literal["none", "float16", "dynamic", "int8"]
DEPLOY_FORMAT_NAMES: tuple[str, ...] = get_args(DeployFormat)
QUANTIZATION_NAMES: tuple[str, ...] = get_args(Quantization)

#: ``augmentation`` presets and operations (implemented in :mod:`tf_crnn.augmentation`, in the same order).
AugmentationPreset = Literal["none", "light", "default", "strong"]
AugmentationOperation = Literal["rotation", "shear", "scale", "baseline", "elastic",
                                "brightness", "contrast", "stroke_width", "blur", "salt_pepper", "noise"]
AUGMENTATION_PRESET_NAMES: tuple[str, ...] = get_args(AugmentationPreset)
AUGMENTATION_OPERATION_NAMES: tuple[str, ...] = get_args(AugmentationOperation)
#: What each ``augmentation`` preset applies, in order: ``(operation, strength)``. ``light`` is what
#: ``data_augmentation: true`` did before the ``augmentation`` key existed, and still does without it.
AUGMENTATION_PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    "none": (),
    "light": (("brightness", 0.5), ("contrast", 0.5), ("stroke_width", 0.5), ("noise", 0.5)),
    "default": (("rotation", 0.5), ("shear", 0.5), ("scale", 0.5), ("baseline", 0.5),
                ("brightness", 0.5), ("contrast", 0.5), ("stroke_width", 0.5), ("blur", 0.5), ("noise", 0.5)),
    "strong": (("rotation", 1.0), ("shear", 1.0), ("scale", 1.0), ("baseline", 1.0), ("elastic", 1.0),
               ("brightness", 0.6), ("contrast", 0.6), ("stroke_width", 1.0), ("blur", 0.6),
               ("salt_pepper", 0.6), ("noise", 0.6)),
}


#: What a model whose ``params.json`` lacks ``unicode_normalization`` (exported before tf-crnn 0.5.0) gets.
#: Such a model was trained on labels as written, and those came from ``tf-crnn prepare`` (NFC) or editors
#: that type composed letters, so NFC compares text the way most of them were trained.
LEGACY_UNICODE_NORMALIZATION = "NFC"


def recorded_unicode_normalization(params: dict) -> str:
    """The ``unicode_normalization`` of a model's ``params.json`` (:data:`LEGACY_UNICODE_NORMALIZATION` if absent).

    Raises:
        ConfigError: a value outside :data:`UNICODE_NORMALIZATION_NAMES`.
    """
    form = params.get("unicode_normalization", LEGACY_UNICODE_NORMALIZATION)
    if form not in UNICODE_NORMALIZATION_NAMES:
        raise ConfigError(f"unicode_normalization must be {one_of(UNICODE_NORMALIZATION_NAMES)}, got {form!r}")
    return form


def one_of(names: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'`` for a message."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def type_problem(value, hint) -> str | None:
    """What ``value`` should be to match the type ``hint`` of a :class:`Params` field, or None if it matches.

    ``int`` takes integers only (not ``True``, not ``2.5``, not ``"3"``); ``float``
    takes integers and floats; ``bool`` only ``true`` / ``false``; lists are checked
    element by element; a ``Literal`` lists its choices; ``X | None`` also takes null.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return None if value in args else one_of(args)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [type_problem(value, a) for a in args if a is not type(None)]
        return None if None in problems else " or ".join(problems) + (" or null" if type(None) in args else "")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return f"a list of {_type_name(args[0])}"
        inner = [type_problem(v, args[0]) for v in value]
        return next((f"a list of {_type_name(args[0])}" for p in inner if p is not None), None)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    return None


def _type_name(hint) -> str:
    if typing.get_origin(hint) is list:
        return f"lists of {_type_name(typing.get_args(hint)[0])}"
    return {int: "integers", float: "numbers", bool: "booleans", str: "strings", dict: "objects"}.get(hint, str(hint))


def augmentation_problem(operations: list) -> str | None:
    """What is wrong with an ``augmentation`` list (the message names the key and the entry), or None.

    Each entry must be ``{"name": OPERATION, "strength": NUMBER}`` with an operation of
    :data:`AUGMENTATION_OPERATION_NAMES`, named once, and a strength from 0 (off) to 1.
    """
    seen = set()
    for i, op in enumerate(operations):
        where = f"augmentation[{i}]"
        if not isinstance(op, dict) or set(op) != {"name", "strength"}:
            return (f'{where} must be {{"name": OPERATION, "strength": NUMBER}}, got {op!r} '
                    f"(or give a preset: augmentation={one_of(AUGMENTATION_PRESET_NAMES)})")
        name, strength = op["name"], op["strength"]
        if name not in AUGMENTATION_OPERATION_NAMES:
            close = difflib.get_close_matches(str(name), AUGMENTATION_OPERATION_NAMES, n=1)
            return (f"{where}: unknown operation {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; the operations are {one_of(AUGMENTATION_OPERATION_NAMES)}")
        if type_problem(strength, float) or not 0.0 <= strength <= 1.0:
            return f"{where} ({name}): strength must be a number from 0 (off) to 1 (strongest), got {strength!r}"
        if name in seen:
            return f"augmentation names {name!r} twice: give each operation once"
        seen.add(name)
    return None


class ConfigError(ValueError):
    """An invalid or unknown setting; the message names the key and what to do."""


def load_config_file(path: str | os.PathLike) -> dict:
    """The settings of a JSON config file as a dict.

    Raises:
        ConfigError: no such file, not UTF-8, invalid JSON (the message names the file, line and column), a key
            given twice, or not an object.
    """
    try:
        values = load_json(path, "config file")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except TextFileError as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object {{\"key\": value, ...}}, not a "
                          f"{type(values).__name__}")
    return values


def parse_assignments(pairs: list[str], option: str) -> dict:
    """``["n_epochs=3", "cache_images=off"]`` -> ``{"n_epochs": 3, "cache_images": "off"}``.

    Values are read as JSON where they parse (numbers, booleans, lists, as in a config file), else kept as text.

    Raises:
        ConfigError: an item without ``=`` (the message names ``option``).
    """
    values = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{option} takes KEY=VALUE, got {item!r}")
        try:
            values[key] = json.loads(value)
        except ValueError:
            values[key] = value
    return values


def check_config_files(argv: list[str]) -> None:
    """Read every JSON file named after ``with`` on a Sacred command line, so a broken one is named.

    Sacred itself stops with a traceback on a JSON error; this runs first. ``key=value``
    updates and named configs are left to Sacred.

    Raises:
        ConfigError: as :func:`load_config_file`.
    """
    if "with" not in argv:
        return
    for arg in argv[argv.index("with") + 1:]:
        if arg.startswith("-"):
            break
        if "=" not in arg and arg.lower().endswith(".json"):
            load_config_file(arg)


# Shi, Bai & Yao 2015 (arXiv 1507.05717), Table 1: seven 3x3 convolutions
# (64, 128, 256, 256, 512, 512, 512), 2x2 pools after the first two, 2x1 pools
# (height only) after the 4th and 6th, batch norm after the 5th and 6th.
# The paper's last conv is 2x2 'valid'; we use 3x3 'same' plus a height
# collapse so any input height works.
SHI_FEATURES = [64, 128, 256, 256, 512, 512, 512]
SHI_POOLS = [[2, 2], [2, 2], [1, 1], [2, 1], [1, 1], [2, 1], [1, 1]]
SHI_BATCH_NORM = [False, False, False, False, True, True, False]


@dataclass
class Params:
    """All settings of a training run. Units: pixels, symbols, epochs, steps.

    Data
        csv_files_train, csv_files_eval: annotation CSVs (see
            :mod:`tf_crnn.annotations`); relative image paths resolve against
            each CSV's folder. An entry may be a compiled data set folder
            (``tf-crnn compile``, :mod:`tf_crnn.compiled`); a split is all
            CSVs or all compiled folders.
        lookup_alphabet_file: JSON lookup table ``{symbol: code}`` (not used, and may be empty, with
            init_alphabet ``union`` or ``new``).
        csv_delimiter, string_split_delimiter: the CSV's separators.
        unicode_normalization: the Unicode normalisation form label symbols, alphabet symbols and
            lexicon words are compared in: ``NFC`` (the default: composed, ``ü`` is one code point,
            what ``tf-crnn prepare`` writes and most keyboards type), ``NFD`` (decomposed, ``u`` +
            U+0308) or ``none`` (compared as written, code point by code point). Applied when the
            CSVs, the lookup table and a lexicon are read, and again by evaluation and prediction
            with the model's own setting (``params.json``; an export without the key gets ``NFC``).
            Two alphabet keys that become one symbol in the form are an error.
        input_shape: ``[height, min_width]``: images are resized to ``height``
            keeping their aspect ratio and padded to at least ``min_width``.
        max_width: wider images are squeezed to this width.
        input_channels: 1 (grey) or 3 (RGB) after decoding.
        augmentation: what training images go through (never eval, export or
            predict; :mod:`tf_crnn.augmentation`): a preset, ``none``, ``light``,
            ``default`` or ``strong`` (:data:`AUGMENTATION_PRESETS`), or a list of
            operations applied in order, ``[{"name": "rotation", "strength": 0.5}, ...]``,
            each named once, strength from 0 (off) to 1 (the strongest; what 1
            means per operation: :data:`tf_crnn.augmentation.OPERATIONS`). Operations:
            geometric ``rotation``, ``shear``, ``scale``, ``baseline``, ``elastic``;
            degradation ``brightness``, ``contrast``, ``stroke_width``, ``blur``,
            ``salt_pepper``, ``noise``. null (the default): ``light`` when
            data_augmentation is true, else ``none``.
        data_augmentation: the older switch: false turns augmentation off (then
            augmentation must be null, ``none`` or empty); true with
            augmentation null is the ``light`` preset (brightness, contrast,
            stroke width, Gaussian noise: what tf-crnn augmented before the
            augmentation key).
        on_bad_sample: ``"error"`` stops before training on a missing or
            undecodable image or a label too long for its image's CTC sequence
            length; ``"skip"`` reports and leaves such rows out.
        data_fingerprint: how the run records the identity of its image set:
            ``content`` (MD5 of every image's bytes; about 5 s per 100k small
            images here, remembered per file in the check cache,
            :mod:`tf_crnn.check_cache`, so a later run hashes only new or
            changed files: the default at every size), ``stat`` (path, size,
            modification time) or ``off``.
        cache_images: keep the decoded, resized images in memory after the
            first pass, so later epochs (and every evaluation after the first)
            skip reading, decoding and resizing; augmentation still runs on
            every epoch's copy. ``auto``: when the images take at most
            cache_images_mb (float32, ``height * width * channels * 4`` bytes
            each, summed over the train and eval splits); ``on``; ``off``.
        cache_images_mb: the memory budget of ``cache_images: auto``, in MiB.

    Model (CRNN, Shi et al. 2015 by default)
        cnn_features_list, cnn_kernel_size, cnn_pool_size, cnn_batch_norm: one
            entry per conv block (filters, square kernel, ``[pool_h, pool_w]``,
            batch norm after the conv).
        rnn_units: units of each bidirectional LSTM layer (per direction).
        dropout: dropout rate before each BiLSTM and before the classifier.
        use_stn: put an affine spatial transformer before the conv blocks (a small
            localisation network and a bilinear sampler trained end to end;
            Jaderberg et al. 2015, as Shi et al. 2016 RARE rectify text;
            :mod:`tf_crnn.stn`). It starts as the identity. Off by default.

    Training
        n_epochs: how many epochs to train.
        train_batch_size: images per training step (the global batch, split over the workers of a strategy).
        eval_batch_size: images per batch of the evaluation after each epoch (each device scores whole
            batches; several workers share them out).
        steps_per_epoch: training steps per epoch; null: one pass over the training CSVs. Fewer steps
            than one pass end the epoch early; more steps go on into further passes over the training
            data, each shuffled and augmented anew (a fine-tuning on a few lines trains for a set number of
            steps, not of passes, without an evaluation after every few steps).
        optimizer: ``adam``, ``adamw``, ``rmsprop`` or ``sgd`` (:data:`Optimizer`).
        learning_rate: the rate every schedule starts from after its warm-up (the peak of ``one_cycle``).
        learning_decay_rate, learning_decay_steps: the ``exponential`` schedule's
            decay ``lr * rate ** (step / decay_steps)``.
        warmup_steps: linear warm-up from 0 (helps leave the all-blank CTC plateau).
        learning_rate_schedule: ``exponential`` (the decay above), ``cosine``
            (warm-up, then cosine annealing to ``learning_rate *
            learning_rate_final_fraction`` at the last step of ``n_epochs``;
            Loshchilov & Hutter 2017) or ``one_cycle`` (linear rise from
            ``learning_rate / 25`` to ``learning_rate`` over warmup_steps, or 30 %
            of the training when that is 0, then cosine annealing to the same
            floor; Smith & Topin 2017). See :mod:`tf_crnn.schedules`.
        learning_rate_final_fraction: the last step's learning rate of
            ``cosine`` and ``one_cycle`` as a fraction of learning_rate, in [0, 1].
        ema_decay: exponential moving average of the weights (Polyak averaging),
            ``average = ema_decay * average + (1 - ema_decay) * weights`` after
            every step; evaluation and the exports use the average, training
            continues on the weights themselves; in [0, 1), 0 turns it off.
            Typical: 0.999 (the average spans about 1 / (1 - ema_decay) steps,
            so keep that well below the training's steps).
        gradient_clip_norm: global norm clipping (0 disables).
        jit_compile: compile forward pass, CTC loss and gradients with XLA. Off by
            default: XLA recompiles for every new batch width (width bucketing
            makes several), and on a 2-core CPU even fixed-shape steps were slower
            (35.5 vs 49.6 images/s, default CRNN, batch 32, 32 x 100:
            ``benchmarks/train_throughput.py --setups word --batch 32 --no-observer [--jit-compile]``).
        mixed_precision: 16-bit compute with float32 weights and float32 logits.
            ``auto``: bfloat16 on a CPU that computes it natively (AMX-BF16 or
            AVX512-BF16, no GPU), float16 with dynamic loss scaling on a GPU of
            compute capability >= 7.0, else off. ``on``: float16 on a GPU,
            bfloat16 on a CPU. ``float16``, ``bfloat16``, ``off``: that one.
            Exports take and give float32 either way. Figures: docs/benchmarks/speed.md.
        strategy: ``auto`` (default on CPU, OneDevice on 1 GPU, Mirrored on
            several, MultiWorkerMirrored when ``TF_CONFIG`` or a Slurm job
            step names several workers: :mod:`tf_crnn.cluster`), or ``default``,
            ``one_device``, ``mirrored``, ``multi_worker``.
        early_stopping_patience: stop after this many epochs without an eval
            CER improvement larger than early_stopping_min_delta (0: off).
        lr_plateau_patience: multiply the learning rate by lr_plateau_factor
            after this many epochs without an eval CER improvement larger than
            lr_plateau_min_delta (0: off). A reduction stops at lr_plateau_min_lr
            (the rate of the step where it is made; 0: no bound) and none is made
            below it; the schedule's own decay can still take later steps' rate
            below lr_plateau_min_lr.
        overwrite_output: start a new training in an ``output_model_dir``
            that holds another run's checkpoints, replacing it: its
            checkpoints, exports, reports and TensorBoard logs are removed
            first (otherwise that is refused unless ``restore_model``).
        deterministic: seed Python, NumPy and TensorFlow from the run's seed and
            turn on TensorFlow's op determinism, so two runs of the same config
            and seed give the same weights and metrics (slower; see docs/guide/runs.md).
        restore_model: continue from the last checkpoint in
            ``output_model_dir`` (weights, optimizer state, epoch).
        keep_checkpoints: how many epoch checkpoints to keep.
        output_model_dir: the training's folder: ``checkpoints/``, ``export/``, ``export_best/``,
            ``reports/``, ``tensorboard/``, ``run.json``; one training per folder (see overwrite_output).
        early_stopping_min_delta: the smallest fall of the eval CER that counts as an improvement for
            early_stopping_patience.
        lr_plateau_factor: what lr_plateau_patience multiplies the learning rate by.
        lr_plateau_min_delta: the smallest fall of the eval CER that counts as an improvement for
            lr_plateau_patience.
        lr_plateau_min_lr: the plateau reduction does not lower the learning rate below this (0: no floor).

    Fine-tuning (:mod:`tf_crnn.finetune`)
        init_from: start from another training's weights: an export folder
            (SavedModel with ``params.json`` and ``alphabet.json``), a
            checkpoint folder (``output_model_dir/checkpoints``; its
            training's settings are read from the ``export_best`` or ``export``
            beside it), a run in the training's database (``run:ID``, or
            the integer ID), or a model shipped with tf-crnn
            (``pretrained:NAME``; ``tf-crnn models list``). Layers of equal shapes are copied; the output
            layer is remapped by symbol between the two alphabets (new symbols
            start fresh); conv or LSTM layers of other shapes are an error.
            With ``restore_model`` and a checkpoint to resume, the checkpoint
            is used instead. null: start from random weights.
        freeze_conv_epochs: the conv blocks are not trained during the first
            this many epochs (needs init_from; 0: never frozen).
        init_alphabet: the alphabet a fine-tuning trains with (as kraken's ``ketos train --resize``):
            ``table`` (the default) the lookup_alphabet_file, which must hold every label symbol;
            ``union`` the init_from source's alphabet extended with the label symbols (training and
            eval CSVs) it lacks, the new ones numbered after its codes in code-point order, so a new
            book's ``β`` is no dead end; ``new`` only the label symbols (numbered in code-point
            order). Shared symbols keep their output weights, new ones start fresh; the run records
            the symbols added (``info.init_from.alphabet``) and the export holds the table. ``union``
            and ``new`` need init_from.

    Decoding
        decoding: ``greedy`` or ``beam_search``.
        beam_width: hypotheses kept at each step of beam search.
        num_beam_paths: how many hypotheses beam search returns (the export's outputs and
            ``Prediction.alternatives``).

    Runs
        mongo_url: MongoDB URL; None uses ``TF_CRNN_MONGO_URL`` or the
            embedded SecantusDB server.
        mongo_db_name: database name.
    """

    csv_files_train: list[str] = field(default_factory=list)
    csv_files_eval: list[str] = field(default_factory=list)
    lookup_alphabet_file: str = ""
    output_model_dir: str = "output"
    csv_delimiter: str = ";"
    string_split_delimiter: str = "|"
    unicode_normalization: UnicodeNormalization = "NFC"
    input_shape: list[int] = field(default_factory=lambda: [32, 100])
    max_width: int = 2048
    input_channels: int = 1
    data_augmentation: bool = True
    augmentation: AugmentationPreset | list[dict] | None = None
    on_bad_sample: OnBadSample = "error"
    data_fingerprint: DataFingerprint = "content"
    cache_images: CacheImages = "auto"
    cache_images_mb: int = 2048

    cnn_features_list: list[int] = field(default_factory=lambda: list(SHI_FEATURES))
    cnn_kernel_size: list[int] = field(default_factory=lambda: [3] * 7)
    cnn_pool_size: list[list[int]] = field(default_factory=lambda: [list(p) for p in SHI_POOLS])
    cnn_batch_norm: list[bool] = field(default_factory=lambda: list(SHI_BATCH_NORM))
    rnn_units: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.0
    use_stn: bool = False

    n_epochs: int = 10
    train_batch_size: int = 64
    eval_batch_size: int = 64
    steps_per_epoch: int | None = None
    optimizer: Optimizer = "adam"
    learning_rate: float = 1e-3
    learning_decay_rate: float = 0.96
    learning_decay_steps: int = 1000
    warmup_steps: int = 0
    learning_rate_schedule: LearningRateSchedule = "exponential"
    learning_rate_final_fraction: float = 0.01
    ema_decay: float = 0.0
    gradient_clip_norm: float = 5.0
    jit_compile: bool = False
    mixed_precision: MixedPrecision = "auto"
    strategy: Strategy = "auto"
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    lr_plateau_patience: int = 0
    lr_plateau_factor: float = 0.5
    lr_plateau_min_delta: float = 0.0
    lr_plateau_min_lr: float = 0.0
    deterministic: bool = False
    restore_model: bool = False
    overwrite_output: bool = False
    keep_checkpoints: int = 3
    init_from: str | int | None = None
    freeze_conv_epochs: int = 0
    init_alphabet: InitAlphabet = "table"

    decoding: Decoding = "greedy"
    beam_width: int = 10
    num_beam_paths: int = 1

    mongo_url: str | None = None
    mongo_db_name: str = "tf_crnn"

    def __post_init__(self):
        self.validate()

    # ---- derived quantities -------------------------------------------------
    @property
    def height(self) -> int:
        return int(self.input_shape[0])

    @property
    def min_width(self) -> int:
        return int(self.input_shape[1])

    @property
    def width_downsampling(self) -> list[int]:
        """The pool widths, in order (each pool shrinks the time axis, rounding up)."""
        return [int(p[1]) for p in self.cnn_pool_size]

    def sequence_length(self, width: int) -> int:
        """CTC time steps the CRNN produces for an input of ``width`` pixels."""
        t = int(width)
        for pw in self.width_downsampling:
            t = math.ceil(t / pw)
        return t

    def resized_width(self, width: int, height: int) -> int:
        """Width of an image of ``width x height`` after resizing to ``self.height``.

        Aspect ratio is kept, then the width is clipped to ``[min_width, max_width]``.
        """
        # floor(x + 0.5), as data.preprocess_image computes it in-graph for the export (not banker's rounding).
        w = max(1, math.floor(width * self.height / max(1, height) + 0.5))
        return int(min(max(w, self.min_width), self.max_width))

    @property
    def augmentation_ops(self) -> tuple[tuple[str, float], ...]:
        """``(operation, strength)`` pairs training images go through, in order (empty: no augmentation).

        The ``augmentation`` preset or list; when it is null, ``light`` if ``data_augmentation`` else none.
        """
        spec = self.augmentation
        if spec is None:
            spec = "light" if self.data_augmentation else "none"
        if isinstance(spec, str):
            return AUGMENTATION_PRESETS[spec]
        return tuple((op["name"], float(op["strength"])) for op in spec)

    # ---- (de)serialisation --------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default settings as a plain dict (what Sacred registers)."""
        return cls().to_dict()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], ignore: tuple[str, ...] = ("seed",)) -> "Params":
        """Build from a dict, rejecting unknown keys with a suggestion.

        Raises:
            ConfigError: unknown key (with the closest known key) or invalid value.
        """
        known = set(cls.field_names())
        unknown = [k for k in values if k not in known and k not in ignore]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, known, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"unknown config key(s): {', '.join(hints)}")
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Params":
        """Load a JSON config file (Sacred's ``with file.json`` format).

        Raises:
            ConfigError: the file is missing, is not a JSON object (naming line and column), or has bad keys / values.
        """
        return cls.from_dict(load_config_file(path))

    # ---- validation ---------------------------------------------------------
    def validate(self) -> None:
        """Check types (:func:`type_problem`), ranges and consistency; raise :class:`ConfigError` naming the key."""
        def need(cond: bool, msg: str):
            if not cond:
                raise ConfigError(msg)

        for key in ("csv_files_train", "csv_files_eval"):
            if isinstance(getattr(self, key), str):  # a single file is a common slip
                setattr(self, key, [getattr(self, key)])
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            problem = type_problem(getattr(self, f.name), hints[f.name])
            need(problem is None, f"{f.name} must be {problem}, got {getattr(self, f.name)!r}")
        if isinstance(self.augmentation, (list, tuple)):
            problem = augmentation_problem(self.augmentation)
            need(problem is None, str(problem))
            self.augmentation = [{"name": op["name"], "strength": op["strength"]} for op in self.augmentation]
        need(self.data_augmentation or not self.augmentation_ops,
             f"data_augmentation=false turns augmentation off but augmentation={self.augmentation!r} turns it on: "
             "set only augmentation (data_augmentation is the older switch), or augmentation='none'")
        need(all(v >= 1 for v in [*self.cnn_features_list, *self.cnn_kernel_size]),
             "cnn_features_list and cnn_kernel_size entries must be >= 1")
        need(self.cache_images_mb >= 0, f"cache_images_mb must be >= 0 (MiB), got {self.cache_images_mb}")
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"steps_per_epoch must be >= 1, or null for one pass over the training data, got {self.steps_per_epoch}")
        need(self.warmup_steps >= 0 and self.gradient_clip_norm >= 0,
             "warmup_steps and gradient_clip_norm must be >= 0 (0 turns them off)")
        need(0.0 <= self.learning_rate_final_fraction <= 1.0,
             f"learning_rate_final_fraction must be in [0, 1] (the last step's learning rate of cosine and one_cycle "
             f"as a fraction of learning_rate), got {self.learning_rate_final_fraction}")
        need(0.0 <= self.ema_decay < 1.0,
             f"ema_decay must be in [0, 1) (0 turns the weight average off; 0.999 is typical), got {self.ema_decay}")
        need(not isinstance(self.init_from, int) or self.init_from >= 1,
             f"init_from must be a run id >= 1, 'run:ID', an export folder or a checkpoint folder, "
             f"got {self.init_from}")
        need(not isinstance(self.init_from, str) or self.init_from.strip() not in ("", "run:", "pretrained:"),
             "init_from must name an export folder, a checkpoint folder, a run ('run:ID') or a shipped model "
             f"('pretrained:NAME'), got {self.init_from!r}")
        need(self.init_alphabet == "table" or self.init_from is not None,
             f"init_alphabet={self.init_alphabet} extends or replaces the alphabet of init_from: set init_from too "
             "(or init_alphabet=table)")
        need(self.freeze_conv_epochs >= 0, f"freeze_conv_epochs must be >= 0 (0: never frozen), "
                                           f"got {self.freeze_conv_epochs}")
        need(self.freeze_conv_epochs == 0 or self.init_from is not None,
             "freeze_conv_epochs keeps the conv blocks as init_from gave them: set init_from too (or "
             "freeze_conv_epochs=0)")
        need(bool(self.csv_delimiter) and bool(self.string_split_delimiter)
             and self.csv_delimiter != self.string_split_delimiter,
             "csv_delimiter and string_split_delimiter must be two different, non-empty strings")
        need(bool(self.mongo_db_name), "mongo_db_name must not be empty")
        need(len(self.input_shape) == 2 and all(v > 0 for v in self.input_shape),
             f"input_shape must be [height, min_width] in pixels, got {self.input_shape}")
        need(self.max_width >= self.min_width,
             f"max_width ({self.max_width}) must be >= input_shape[1] ({self.min_width})")
        need(self.input_channels in (1, 3), f"input_channels must be 1 or 3, got {self.input_channels}")
        n = len(self.cnn_features_list)
        need(n > 0, "cnn_features_list must name at least one conv block")
        for key in ("cnn_kernel_size", "cnn_pool_size", "cnn_batch_norm"):
            need(len(getattr(self, key)) == n,
                 f"{key} has {len(getattr(self, key))} entries but cnn_features_list has {n}: give one per conv block")
        need(all(len(p) == 2 and p[0] >= 1 and p[1] >= 1 for p in self.cnn_pool_size),
             "cnn_pool_size entries must be [pool_height, pool_width] >= 1")
        height_pool = math.prod(p[0] for p in self.cnn_pool_size)
        need(self.height >= height_pool,
             f"input height {self.height} is smaller than the total height pooling {height_pool}")
        need(len(self.rnn_units) >= 1 and all(u > 0 for u in self.rnn_units), "rnn_units must be positive")
        need(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        need(self.n_epochs >= 1 and self.train_batch_size >= 1 and self.eval_batch_size >= 1,
             "n_epochs and batch sizes must be >= 1")
        need(self.learning_rate > 0 and self.learning_decay_steps > 0 and 0 < self.learning_decay_rate <= 1,
             "learning_rate > 0, learning_decay_steps > 0 and 0 < learning_decay_rate <= 1 required")
        need(self.beam_width >= 1 and 1 <= self.num_beam_paths <= self.beam_width,
             "need beam_width >= 1 and 1 <= num_beam_paths <= beam_width")
        need(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        need(self.early_stopping_patience >= 0 and self.lr_plateau_patience >= 0,
             "early_stopping_patience and lr_plateau_patience must be >= 0 (0 turns them off)")
        need(self.early_stopping_min_delta >= 0 and self.lr_plateau_min_delta >= 0 and self.lr_plateau_min_lr >= 0,
             "early_stopping_min_delta, lr_plateau_min_delta and lr_plateau_min_lr must be >= 0")
        need(0.0 < self.lr_plateau_factor < 1.0, f"lr_plateau_factor must be in (0, 1), got {self.lr_plateau_factor}")
        need(not (self.deterministic and self.jit_compile),
             "deterministic=True and jit_compile=True cannot go together: XLA has no deterministic MaxPool gradient")
        need(not (self.restore_model and self.overwrite_output),
             "restore_model=True continues the training in output_model_dir, overwrite_output=True replaces it: "
             "set only one of them")
