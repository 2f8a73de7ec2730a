"""What made a run: code version, data identity and environment, in forms a run record can keep.

- :func:`file_md5` / :func:`data_fingerprint`: the identity of CSVs and of the
  image set (``content``: MD5 of every image's bytes, remembered per file in the
  check cache, :mod:`tf_crnn.check_cache`; ``stat``: path, size and
  modification time; ``off``);
- :func:`git_state`: commit, branch and dirty flag of the git checkout a path
  is in, and the diff against that commit (``code.diff``);
- :func:`environment` / :func:`installed_distributions`: Python, TensorFlow,
  Keras, CUDA / cuDNN, devices, strategy; every installed distribution
  (``environment.txt``); :func:`changed_environment` compares two (a re-run's
  with the record);
- :func:`package_sources`: every module of :mod:`tf_crnn`, for Sacred's source
  list (Sacred only finds the modules imported when the experiment is created);
- :func:`installed_lock`: which lock file of ``requirements/`` the environment was installed from.

Nothing here imports TensorFlow until :func:`environment` is called.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tqdm import tqdm

from .. import check_cache
from ..config import DATA_FINGERPRINT_NAMES, one_of

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def file_md5(path: str | os.PathLike) -> str:
    """MD5 hex digest of a file's bytes (the hash Sacred uses for sources and resources).

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _stat_key(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_md5s(paths: Sequence[str], progress: bool = False,
              stats: check_cache.FileStats | None = None) -> list[str]:
    """:func:`file_md5` of each file, in order, hashing only the files the check cache does not know unchanged.

    The digests are remembered in :mod:`tf_crnn.check_cache` (by absolute path, size and modification time),
    so a later call reads only new or changed files. Files are read in threads. ``stats``: the run's file keys
    (:class:`tf_crnn.check_cache.FileStats`), when its data checks have stat'ed the files already.

    Raises:
        OSError: a file cannot be read.
    """
    cache = check_cache.shared()
    # Before reading: a file changed while it is hashed gets hashed again.
    keys = (stats or check_cache.FileStats()).keys(paths)
    digests = cache.md5s(keys)
    todo = [i for i, digest in enumerate(digests) if digest is None]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        hashed = list(tqdm(pool.map(file_md5, [paths[i] for i in todo]), total=len(todo),
                           desc="fingerprinting images (content)", unit="img", disable=not progress or not todo,
                           mininterval=1.0))
    for i, digest in zip(todo, hashed):
        digests[i] = digest
    cache.remember_md5s([(keys[i], digest) for i, digest in zip(todo, hashed)])
    return digests


def data_fingerprint(paths: Iterable[str], mode: str = "stat", progress: bool = False,
                     stats: check_cache.FileStats | None = None) -> str | None:
    """One SHA-256 hex digest for a set of image files, independent of their order; None for ``off``.

    Args:
        paths: the image files (duplicates count once).
        mode: ``content`` hashes every file's bytes (MD5 each: :func:`file_md5s`, which reads only the files
            the check cache does not know unchanged); ``stat`` hashes path, size and modification time (changes
            when a file is rewritten even with equal bytes); ``off``.
        progress: a tqdm bar over the files.
        stats: the run's file keys (``content``: :func:`file_md5s`; ``stat`` takes its own, in threads behind a
            progress bar).

    Raises:
        ValueError: unknown ``mode``.
        OSError: a file cannot be read (``content``) or stat'ed (``stat``).
    """
    if mode not in DATA_FINGERPRINT_NAMES:
        raise ValueError(f"data_fingerprint must be {one_of(DATA_FINGERPRINT_NAMES)}, got {mode!r}")
    if mode == "off":
        return None
    unique = sorted({os.path.abspath(p) for p in paths})
    if mode == "content":
        keys = file_md5s(unique, progress, stats)
    else:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            keys = list(tqdm(pool.map(_stat_key, unique), total=len(unique), desc="fingerprinting images (stat)",
                             unit="img", disable=not progress, mininterval=1.0))
    digest = hashlib.sha256()
    for path, value in zip(unique, keys):
        digest.update(f"{path}\0{value}\n".encode())
    return digest.hexdigest()


def git_state(path: str | os.PathLike = PACKAGE_ROOT) -> dict | None:
    """The git checkout ``path`` is in: ``{"commit", "branch", "dirty", "diff"}``, or None outside git.

    ``diff`` is ``git diff HEAD`` (tracked files; empty when clean), ``dirty`` whether it is
    non-empty. Uses the
    ``git`` command; without it, or outside a checkout, returns None.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True,
                              timeout=60).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        branch = git("rev-parse", "--abbrev-ref", "HEAD").strip()
        diff = git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    # Dirty as Sacred and git count it: tracked files differ from the commit (untracked outputs do not count).
    return {"commit": commit, "branch": branch, "dirty": bool(diff.strip()), "diff": diff}


def installed() -> dict[str, tuple[str, str]]:
    """``{distribution key: (name as published, version)}`` of every installed distribution (importlib.metadata;
    the first found of a name is the one Python imports)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(distribution_key(name), (name, dist.version))
    return found


def installed_distributions() -> str:
    """Every installed Python distribution as ``name==version`` lines, sorted (``pip freeze``-like)."""
    return "".join(f"{name}=={version}\n" for _, (name, version) in sorted(installed().items()))


#: Where the lock files are, relative to the repository root (``scripts/lock.sh`` writes them).
LOCK_FOLDER = "requirements"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def distribution_key(name: str) -> str:
    """A distribution's name as PEP 503 compares them: ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock_file: str | os.PathLike) -> dict[str, str]:
    """``{distribution key: version}`` of every ``name==version`` line of a pip / uv lock file.

    Hash, comment and option lines are skipped; the locks of ``scripts/lock.sh`` carry no environment markers.
    """
    pins = {}
    for line in Path(lock_file).read_text(encoding="utf-8").splitlines():
        found = _PIN.match(line)
        if found:
            pins[distribution_key(found.group(1))] = found.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    """``{distribution key: version}`` of every installed distribution (:func:`installed`)."""
    return {key: version for key, (_, version) in installed().items()}


def lock_differences(pins: Mapping[str, str], installed: Mapping[str, str]) -> list[str]:
    """``name: locked X, installed Y`` (or ``not installed``) for every pin the environment does not meet, sorted."""
    return [f"{name}: locked {version}, " + (f"installed {installed[name]}" if name in installed else "not installed")
            for name, version in sorted(pins.items()) if installed.get(name) != version]


def installed_lock(root: str | os.PathLike = PACKAGE_ROOT.parent, installed: Mapping[str, str] | None = None) -> dict:
    """Which lock file of ``root/requirements/*.txt`` the installed distributions match.

    Args:
        root: the repository the package was installed from (the folder above :data:`PACKAGE_ROOT`; an
            editable or source install has ``pyproject.toml`` and ``requirements/`` there, a wheel does not).
        installed: ``{distribution key: version}``; default :func:`installed_versions`.

    Returns:
        ``{"lock": "requirements/test.txt", "matches": True, "also_matching": [...]}`` for the largest lock
        whose every pin is installed at its version (the smaller locks it contains match too, listed);
        else ``{"lock": closest, "matches": False, "differences": [...]}`` for the lock with the fewest
        differing packages (at most 50 listed, ``"different"`` counts them all); without lock files
        ``{"lock": None, "matches": False, "reason": "no lock file found in ..."}``.
    """
    root = Path(root)
    locks = sorted((root / LOCK_FOLDER).glob("*.txt")) if (root / "pyproject.toml").is_file() else []
    if not locks:
        return {"lock": None, "matches": False,
                "reason": f"no lock file found in {root / LOCK_FOLDER} (installed from a wheel or another source)"}
    installed = installed_versions() if installed is None else installed
    compared = []
    for lock in locks:
        pins = lock_pins(lock)
        compared.append((lock.relative_to(root).as_posix(), len(pins), lock_differences(pins, installed)))
    matching = sorted((c for c in compared if not c[2]), key=lambda c: -c[1])
    if matching:
        return {"lock": matching[0][0], "matches": True, "also_matching": [c[0] for c in matching[1:]]}
    name, _, differences = min(compared, key=lambda c: (len(c[2]), -c[1]))
    return {"lock": name, "matches": False, "different": len(differences), "differences": differences[:50]}


def environment(strategy=None) -> dict:
    """Python, platform, TensorFlow, Keras, CUDA / cuDNN (when TensorFlow was built with them) and devices.

    Args:
        strategy: the ``tf.distribute`` strategy of the run, if any (its class name and replica count).
    """
    import keras
    import tensorflow as tf

    build = dict(tf.sysconfig.get_build_info())
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "devices": [f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices()],
    }
    if strategy is not None:
        env["strategy"] = type(strategy).__name__
        env["replicas"] = int(strategy.num_replicas_in_sync)
    return env


#: What :func:`changed_environment` compares, with the name it prints: what can change a training's numbers.
#: ``cpu_bfloat16`` (whether the CPU computes bfloat16 natively) and ``dtype_policy`` (what ``mixed_precision``
#: chose: ``auto`` picks bfloat16 on such a CPU) are added by the training (:func:`record`'s ``environment``).
COMPARED_ENVIRONMENT = {"python": "Python", "tensorflow": "TensorFlow", "keras": "Keras", "cuda": "CUDA",
                        "cudnn": "cuDNN", "devices": "devices", "cpu_bfloat16": "CPU computes bfloat16 natively",
                        "dtype_policy": "dtype policy (mixed_precision)"}


def changed_environment(recorded: dict, current: dict) -> list[str]:
    """What differs between a recorded environment and the current one: one line per item of
    :data:`COMPARED_ENVIRONMENT` that both name (an item a run did not record is not compared).

    Each line reads ``environment: TensorFlow: recorded 2.20.0, now 2.21.0``.
    """
    return [f"environment: {label}: recorded {recorded[key]}, now {current[key]}"
            for key, label in COMPARED_ENVIRONMENT.items()
            if key in recorded and key in current and recorded[key] != current[key]]


def package_sources(root: Path = PACKAGE_ROOT) -> list[str]:
    """Every ``.py`` file of the :mod:`tf_crnn` package, sorted."""
    return sorted(str(p) for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def describe_data(splits: dict[str, tuple[list[str], list[str]]], alphabet_file: str, mode: str,
                  progress: bool = False, stats: check_cache.FileStats | None = None) -> dict:
    """The data of a run: per split its CSVs (path and MD5), usable rows and image fingerprint.

    Args:
        splits: ``{split name: (csv files, image paths of the usable rows)}``.
        alphabet_file: the lookup table (its MD5 is recorded); "" for none (a fine-tuning whose alphabet is made
            from its source's and the labels', ``init_alphabet`` ``union`` / ``new``): path and MD5 null.
        mode: :func:`data_fingerprint`'s mode.
        stats: the run's file keys (:func:`data_fingerprint`).

    Returns:
        ``{"fingerprint_mode", "alphabet": {"path", "md5"}, split: {"csv_files": [{"path", "md5"}],
        "rows": int, "images_fingerprint": str | None}}``: what :func:`changed_data` compares.
        ``rows`` counts the CSV rows, usable or not. A compiled folder among the CSVs is recorded by
        :func:`tf_crnn.compiled.describe` (``md5`` is its manifest's; ``manifest_sha256``, ``examples``,
        ``shards``, ``bytes``), and a split of compiled folders has :func:`tf_crnn.compiled.fingerprint` as
        its ``images_fingerprint`` (``content`` and ``stat`` alike: the manifest identifies the shards' bytes).
    """
    from .. import compiled

    described = {"fingerprint_mode": mode,
                 "alphabet": ({"path": os.path.abspath(alphabet_file), "md5": file_md5(alphabet_file)} if alphabet_file
                              else {"path": None, "md5": None})}
    for name, (csv_files, image_paths) in splits.items():
        folders = compiled.compiled_sources(csv_files)
        described[name] = {
            "csv_files": [compiled.describe(f) if compiled.is_compiled(f) else
                          {"path": os.path.abspath(f), "md5": file_md5(f)} for f in csv_files],
            "rows": len(image_paths),
            # A compiled split's images are its shards, whose SHA-256 its manifest lists: no image file is read.
            "images_fingerprint": (data_fingerprint(image_paths, mode, progress, stats) if not folders or mode == "off"
                                   else compiled.fingerprint(folders)),
        }
    return described


def describe_training_data(params, progress: bool = True, rows: Mapping[str, Sequence] | None = None,
                           stats: check_cache.FileStats | None = None) -> dict:
    """:func:`describe_data` of a config's train and eval CSVs (every row's image, usable or not).

    Args:
        params: a :class:`tf_crnn.config.Params` (CSVs, delimiters, alphabet, ``data_fingerprint``).
        rows: ``{"train": samples, "eval": samples}``, every row of each split's CSVs
            (:class:`tf_crnn.annotations.Sample`) when the caller has read them already (a training reads
            them once, for its data checks and for this); None: the CSVs are read here.
        stats: the run's file keys, when its data checks have stat'ed the images (:func:`data_fingerprint`).

    Raises:
        FileNotFoundError / AnnotationError: a CSV cannot be read.
    """
    from ..compiled import read_rows

    csv_files = {"train": params.csv_files_train, "eval": params.csv_files_eval}
    if rows is None:
        rows = {name: read_rows(files, params.csv_delimiter, params.string_split_delimiter,
                                params.unicode_normalization) for name, files in csv_files.items()}
    splits = {name: (files, [s.image_path for s in rows[name]]) for name, files in csv_files.items()}
    table = params.lookup_alphabet_file if params.init_alphabet == "table" else ""
    return describe_data(splits, table, params.data_fingerprint, progress, stats)


def changed_data(recorded: dict, current: dict) -> list[str]:
    """What differs between two :func:`describe_data` results: one line per file or fingerprint.

    Each line names the file (or split), the recorded value and the current one.
    """
    lines = []

    def compare(what: str, old, new) -> None:
        if old != new:
            lines.append(f"{what}: recorded {old}, now {new}")

    compare(f"alphabet {recorded['alphabet']['path']}", recorded["alphabet"]["md5"], current["alphabet"]["md5"])
    for name, split in recorded.items():
        if name in ("fingerprint_mode", "alphabet"):
            continue
        now = current.get(name, {})
        now_md5 = {f["path"]: f["md5"] for f in now.get("csv_files", [])}
        for f in split["csv_files"]:
            compare(f"{name} CSV {f['path']}", f["md5"], now_md5.get(f["path"], "missing"))
        compare(f"{name} rows", split["rows"], now.get("rows"))
        compare(f"{name} images ({recorded.get('fingerprint_mode')} fingerprint)", split["images_fingerprint"],
                now.get("images_fingerprint"))
    return lines


def record(run, data: dict, environment: dict) -> None:
    """Attach to a Sacred run what made it: code, data, environment (``run.info`` and artifacts).

    - ``info.code``: git commit, branch, dirty flag (and the ``code.diff`` artifact when dirty);
    - ``info.data``: :func:`describe_data`'s result; every CSV and the alphabet (if the training reads one)
      also as a Sacred resource (path + MD5 in the run document, the file in GridFS);
    - ``info.environment``: ``environment`` (:func:`environment` and what the training adds, see
      :data:`COMPARED_ENVIRONMENT`); every installed distribution as ``environment.txt``;
    - ``info.lock``: :func:`installed_lock`, the lock file the environment was installed from.
    """
    import tempfile

    code = git_state()
    run.info["code"] = {k: v for k, v in code.items() if k != "diff"} if code else None
    run.info["data"] = data
    run.info["environment"] = environment
    run.info["lock"] = installed_lock()
    # A compiled folder is stored as its manifest (the shards are data, not a resource of the run).
    for path in [data["alphabet"]["path"], *(f.get("manifest", f["path"]) for split in data.values()
                                             if isinstance(split, dict) and "csv_files" in split
                                             for f in split["csv_files"])]:
        if path is not None:  # no lookup table: an alphabet made from init_from's and the labels' (init_alphabet)
            run.add_resource(path)
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "environment.txt"
        listing.write_text(installed_distributions(), encoding="utf-8")
        run.add_artifact(str(listing), "environment.txt", content_type="text/plain")
        if code and code["dirty"]:
            diff = Path(tmp) / "code.diff"
            diff.write_text(code["diff"], encoding="utf-8")
            run.add_artifact(str(diff), "code.diff", content_type="text/x-diff")
