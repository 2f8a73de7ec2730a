"""Params: every setting of a training, typed and validated, to/from dict and JSON; every choice list.

The key names are those of the original tf-crnn (``csv_files_train``,
``output_model_dir``, ``lookup_alphabet_file``, ...) so existing config files
keep working. The Sacred experiment ``crnn`` (:mod:`tf_crnn.tracking.experiments`)
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


Optimizer = Literal["adam", "adamw", "rmsprop", "sgd"]
Strategy = Literal["auto", "default", "one_device", "mirrored", "multi_worker"]
Decoding = Literal["greedy", "beam_search"]
MixedPrecision = Literal["auto", "on", "off"]
OnBadSample = Literal["error", "skip"]
DataFingerprint = Literal["content", "stat", "off"]
#: ``tf-crnn prepare`` input formats (readers in :mod:`tf_crnn.datasets.formats`).
PrepareFormat = Literal["gt-pairs", "iiit5k", "icdar", "mjsynth", "tsv", "filename", "lmdb"]

OPTIMIZER_NAMES: tuple[str, ...] = get_args(Optimizer)
STRATEGY_NAMES: tuple[str, ...] = get_args(Strategy)
DECODING_NAMES: tuple[str, ...] = get_args(Decoding)
MIXED_PRECISION_NAMES: tuple[str, ...] = get_args(MixedPrecision)
ON_BAD_SAMPLE_NAMES: tuple[str, ...] = get_args(OnBadSample)
DATA_FINGERPRINT_NAMES: tuple[str, ...] = get_args(DataFingerprint)
PREPARE_FORMAT_NAMES: tuple[str, ...] = get_args(PrepareFormat)


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
    return {int: "integers", float: "numbers", bool: "booleans", str: "strings"}.get(hint, str(hint))


class ConfigError(ValueError):
    """An invalid or unknown setting; the message names the key and what to do."""


def load_config_file(path: str | os.PathLike) -> dict:
    """The settings of a JSON config file as a dict.

    Raises:
        ConfigError: no such file, invalid JSON (the message names the file, line and column), or not an object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object {{\"key\": value, ...}}, not a "
                          f"{type(values).__name__}")
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
            each CSV's folder.
        lookup_alphabet_file: JSON lookup table ``{symbol: code}``.
        csv_delimiter, string_split_delimiter: the CSV's separators.
        input_shape: ``[height, min_width]``: images are resized to ``height``
            keeping their aspect ratio and padded to at least ``min_width``.
        max_width: wider images are squeezed to this width.
        input_channels: 1 (grey) or 3 (RGB) after decoding.
        data_augmentation: random affine / brightness / noise on training
            images only.
        on_bad_sample: ``"error"`` stops before training on a missing or
            undecodable image or a label too long for its image's CTC sequence
            length; ``"skip"`` reports and leaves such rows out.
        data_fingerprint: how the run records the identity of its image set:
            ``content`` (MD5 of every image's bytes; about 5 s per 100k small
            images here), ``stat`` (path, size, modification time) or ``off``.

    Model (CRNN, Shi et al. 2015 by default)
        cnn_features_list, cnn_kernel_size, cnn_pool_size, cnn_batch_norm: one
            entry per conv block (filters, square kernel, ``[pool_h, pool_w]``,
            batch norm after the conv).
        rnn_units: units of each bidirectional LSTM layer (per direction).
        dropout: dropout rate before each BiLSTM and before the classifier.

    Training
        n_epochs, train_batch_size, eval_batch_size, steps_per_epoch (None:
        one pass over the training CSVs).
        optimizer: ``adam``, ``adamw``, ``rmsprop`` or ``sgd`` (:data:`Optimizer`).
        learning_rate, learning_decay_rate, learning_decay_steps: exponential
            decay ``lr * rate ** (step / decay_steps)``; warmup_steps: linear
            warm-up from 0 (helps leave the all-blank CTC plateau).
        gradient_clip_norm: global norm clipping (0 disables).
        jit_compile: compile forward pass, CTC loss and gradients with XLA. Off by
            default: XLA recompiles for every new batch width (width bucketing
            makes several), and on a 2-core CPU even fixed-shape steps were slower
            (35.5 vs 49.6 images/s, default CRNN, batch 32, 32 x 100:
            ``benchmarks/train_throughput.py --setups word --batch 32 --no-observer [--jit-compile]``).
        mixed_precision: ``auto`` (float16 compute when a GPU is visible), ``on``
            or ``off``; with loss scaling. Not measured on a GPU yet.
        strategy: ``auto`` (default on CPU, OneDevice on 1 GPU, Mirrored on
            several, MultiWorkerMirrored when ``TF_CONFIG`` names several
            workers), or ``default``, ``one_device``, ``mirrored``,
            ``multi_worker``.
        early_stopping_patience: stop after this many epochs without an eval
            CER improvement larger than early_stopping_min_delta (0: off).
        lr_plateau_patience: multiply the learning rate by lr_plateau_factor
            after this many epochs without an eval CER improvement larger than
            lr_plateau_min_delta, never below lr_plateau_min_lr (0: off).
        overwrite_output: start a new training in an ``output_model_dir``
            that holds another run's checkpoints, replacing it: its
            checkpoints, exports, reports and TensorBoard logs are removed
            first (otherwise that is refused unless ``restore_model``).
        deterministic: seed Python, NumPy and TensorFlow from the run's seed and
            turn on TensorFlow's op determinism, so two runs of the same config
            and seed give the same weights and metrics (slower; see README).
        restore_model: continue from the last checkpoint in
            ``output_model_dir`` (weights, optimizer state, epoch).
        keep_checkpoints: how many epoch checkpoints to keep.

    Decoding
        decoding: ``greedy`` or ``beam_search``; beam_width and
        num_beam_paths for beam search.

    Runs
        mongo_url: MongoDB URL; None uses ``TF_CRNN_MONGO_URL`` or the
            embedded SecantusDB server. mongo_db_name: database name.
    """

    csv_files_train: list[str] = field(default_factory=list)
    csv_files_eval: list[str] = field(default_factory=list)
    lookup_alphabet_file: str = ""
    output_model_dir: str = "output"
    csv_delimiter: str = ";"
    string_split_delimiter: str = "|"
    input_shape: list[int] = field(default_factory=lambda: [32, 100])
    max_width: int = 2048
    input_channels: int = 1
    data_augmentation: bool = True
    on_bad_sample: OnBadSample = "error"
    data_fingerprint: DataFingerprint = "content"

    cnn_features_list: list[int] = field(default_factory=lambda: list(SHI_FEATURES))
    cnn_kernel_size: list[int] = field(default_factory=lambda: [3] * 7)
    cnn_pool_size: list[list[int]] = field(default_factory=lambda: [list(p) for p in SHI_POOLS])
    cnn_batch_norm: list[bool] = field(default_factory=lambda: list(SHI_BATCH_NORM))
    rnn_units: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.0

    n_epochs: int = 10
    train_batch_size: int = 64
    eval_batch_size: int = 64
    steps_per_epoch: int | None = None
    optimizer: Optimizer = "adam"
    learning_rate: float = 1e-3
    learning_decay_rate: float = 0.96
    learning_decay_steps: int = 1000
    warmup_steps: int = 0
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
        need(all(v >= 1 for v in [*self.cnn_features_list, *self.cnn_kernel_size]),
             "cnn_features_list and cnn_kernel_size entries must be >= 1")
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"steps_per_epoch must be >= 1, or null for one pass over the training data, got {self.steps_per_epoch}")
        need(self.warmup_steps >= 0 and self.gradient_clip_norm >= 0,
             "warmup_steps and gradient_clip_norm must be >= 0 (0 turns them off)")
        need(bool(self.csv_delimiter) and bool(self.string_split_delimiter)
             and self.csv_delimiter != self.string_split_delimiter,
             "csv_delimiter and string_split_delimiter must be two different, non-empty strings")
        need(bool(self.mongo_db_name), "mongo_db_name must not be empty")
        need(len(self.input_shape) == 2 and all(v > 0 for v in self.input_shape),
             f"input_shape must be [height, min_width] in pixels, got {self.input_shape}")
        need(self.max_width >= self.min_width, f"max_width ({self.max_width}) must be >= input_shape[1] ({self.min_width})")
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
