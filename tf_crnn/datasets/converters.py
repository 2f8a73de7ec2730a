"""``prepare``: convert an annotated data set to tf-crnn CSV(s) and an alphabet.

One pipeline for every format of :mod:`tf_crnn.datasets.formats`:

1. read records (image path + raw label) from the source;
2. clean each label: strip surrounding whitespace, Unicode-normalize
   (``NFC`` by default), optionally casefold, split into symbols (grapheme
   clusters by default, so ``aͤ`` is one symbol; or code points);
3. check: empty label, missing image, a symbol that contains the CSV
   delimiter ``;`` or the symbol delimiter ``|`` (the format cannot hold it:
   such rows are always skipped and listed);
4. optionally split into parts (train/eval...) by random ratio or by group;
5. only when everything passed: write the CSV(s) (atomically), the alphabet
   and its symbol counts.

Output files, for ``out_csv = data/prepared/fraktur.csv``:

- no split: ``fraktur.csv``;
- with a split: one ``fraktur.<part>.csv`` per part (``fraktur.train.csv``,
  ``fraktur.eval.csv``), and no ``fraktur.csv``;
- ``fraktur.alphabet.json``: lookup table of every symbol in all parts
  (codes 1..N, sorted by code point, see :class:`~tf_crnn.alphabet.Alphabet`);
- ``fraktur.alphabet.counts.json``: how often each symbol occurs;
- ``fraktur_images/``: only for ``lmdb``, the extracted images, and for ``page`` /
  ``alto``, the cut line images (one folder per page).

Group split spec (``split_by_group``; ``--split-by-group`` on the command
line), a Python-free string of ``part=values`` items and an optional ``mod=M``:

- ``"train=0,1 eval=2 mod=5"``: group names are integers (publication years
  with ``group_by="parent"``); ``year % 5`` in {0, 1} goes to train, 2 to eval,
  other years are left out (counted in the summary);
- ``"train=1800-1850 eval=1851-1900"``: inclusive integer ranges;
- ``"train=train eval=test"``: exact group names;
- ``"each"``: one part per group, named after it.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm import tqdm

from ..alphabet import Alphabet
from ..annotations import AnnotationError, Sample, graphemes, listing, normalize, write_csv
from .alphabet_tools import save_counts
from .formats import LAYOUT_FORMATS, READERS, WRITES_IMAGES, Problem, Record
from .layout import LayoutOptions

SPLITS = ("grapheme", "codepoint")
GROUP_BY = ("parent", "top", "source")


class ConversionError(AnnotationError):
    """The source has rows that cannot be converted; the message lists file, line and reason."""

    exit_code = 1  # the data has problems (tf_crnn.cli.errors), not the command line


@dataclass
class PrepareSummary:
    """What :func:`prepare` wrote and what it left out.

    Attributes:
        outputs: part name (``"all"`` without a split) -> (CSV path, rows written).
        skipped: rows left out, each with file/line and reason.
        not_selected: group -> rows whose group is in no part of the split.
        alphabet_path: the lookup table written.
        alphabet_size: number of symbols in it.
        counts_path: the symbol counts written.
        images_dir: folder of extracted (lmdb) or cut (page, alto) images.
    """

    outputs: dict[str, tuple[str, int]] = field(default_factory=dict)
    skipped: list[Problem] = field(default_factory=list)
    not_selected: dict[str, int] = field(default_factory=dict)
    alphabet_path: str = ""
    alphabet_size: int = 0
    counts_path: str = ""
    images_dir: str | None = None

    @property
    def rows_written(self) -> int:
        """Total rows over all parts."""
        return sum(n for _, n in self.outputs.values())

    def to_dict(self) -> dict:
        """A JSON-serializable view."""
        return {
            "outputs": {k: {"csv": p, "rows": n} for k, (p, n) in self.outputs.items()},
            "rows_written": self.rows_written,
            "skipped": [{"origin": p.origin, "reason": p.reason} for p in self.skipped],
            "not_selected": self.not_selected,
            "alphabet": self.alphabet_path,
            "alphabet_size": self.alphabet_size,
            "counts": self.counts_path,
            "images_dir": self.images_dir,
        }

    def __str__(self) -> str:
        lines = [f"{part}: {n} rows -> {path}" for part, (path, n) in self.outputs.items()]
        lines.append(f"alphabet: {self.alphabet_size} symbols -> {self.alphabet_path}")
        if self.not_selected:
            groups = ", ".join(f"{g} ({n})" for g, n in sorted(self.not_selected.items()))
            lines.append(f"not selected by the group split: {sum(self.not_selected.values())} rows in groups {groups}")
        lines.append(f"skipped: {len(self.skipped)} rows")
        lines += [f"  {p}" for p in self.skipped]
        return "\n".join(lines)


# --------------------------------------------------------------------------- group split

@dataclass(frozen=True)
class GroupSplit:
    """A parsed ``split_by_group`` spec (see the module doc)."""

    parts: dict[str, tuple]  # part -> values: int, (lo, hi) range, or str
    mod: int | None = None
    each: bool = False

    def part_of(self, group: str | None) -> str | None:
        """The part ``group`` belongs to, or None when it is in none.

        Raises:
            ValueError: the group matches several parts.
        """
        if self.each:
            return group
        if group is None:
            return None
        number = int(group) if re.fullmatch(r"-?\d+", group) else None
        key = number % self.mod if (self.mod and number is not None) else number
        hits = [part for part, values in self.parts.items() if any(_matches(v, key, group, self.mod) for v in values)]
        if len(hits) > 1:
            raise ValueError(f"group {group!r} matches several parts of the split: {hits}")
        return hits[0] if hits else None


def _matches(value, key: int | None, group: str, mod: int | None) -> bool:
    if isinstance(value, tuple):
        return key is not None and value[0] <= key <= value[1]
    if isinstance(value, int):
        return key == value
    return mod is None and value == group


def parse_group_split(spec: str) -> GroupSplit:
    """Parse ``"train=0,1 eval=2 mod=5"``, ``"train=1800-1850 eval=1851-1900"``,
    ``"train=train eval=test"`` or ``"each"``.

    Raises:
        ValueError: malformed spec (the message shows the expected form).
    """
    spec = spec.strip()
    if spec == "each":
        return GroupSplit({}, each=True)
    parts: dict[str, tuple] = {}
    mod = None
    for item in spec.split():
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"bad group split item {item!r} in {spec!r}; expected e.g. 'train=0,1 eval=2 mod=5'")
        if name == "mod":
            if not values.isdigit() or int(values) < 1:
                raise ValueError(f"mod must be a positive integer, got {values!r}")
            mod = int(values)
            continue
        if not re.fullmatch(r"[\w.-]+", name):
            raise ValueError(f"part name {name!r} must be letters, digits, '_', '-' or '.'")
        if name in parts:
            raise ValueError(f"part {name!r} appears twice in {spec!r}")
        parts[name] = tuple(_parse_value(v) for v in values.split(",") if v)
    if not parts:
        raise ValueError(f"group split {spec!r} names no part")
    if mod is not None:
        for name, values in parts.items():
            if any(isinstance(v, str) for v in values):
                raise ValueError(f"with mod={mod}, part {name!r} must list integers (remainders)")
    return GroupSplit(parts, mod)


def _parse_value(value: str):
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    match = re.fullmatch(r"(-?\d+)-(-?\d+)", value)
    if match:
        return int(match[1]), int(match[2])
    return value


# --------------------------------------------------------------------------- cleaning

def clean_label(text: str, split: str = "grapheme", normalization: str | None = "NFC",
                casefold: bool = False) -> tuple[str, ...]:
    """Strip, normalize, optionally casefold and split a raw label into symbols.

    Args:
        text: the raw label.
        split: ``"grapheme"`` (extended grapheme clusters: base letter plus
            combining marks is one symbol) or ``"codepoint"``.
        normalization: Unicode form (``NFC``, ``NFD``, ``NFKC``, ``NFKD``) or None.
        casefold: apply ``str.casefold`` (note ``ß`` becomes ``ss``).

    Returns:
        The symbols (empty for an empty label).
    """
    text = normalize(text.strip(), normalization)
    if casefold:
        text = normalize(text.casefold(), normalization)
    return tuple(graphemes(text)) if split == "grapheme" else tuple(text)


def _unwritable(symbols: Iterable[str], delimiters: tuple[str, str]) -> str | None:
    # A csv_delimiter inside a label is fine: read_csv splits each row at the first one only.
    _, split_delimiter = delimiters
    for s in symbols:
        if split_delimiter in s:
            return (f"label symbol {s!r} contains the symbol delimiter {split_delimiter!r}, "
                    "which the CSV format cannot hold")
    return None


# --------------------------------------------------------------------------- prepare

def _group_of(record: Record, group_by, root: Path) -> str | None:
    if group_by is None:
        return None
    if callable(group_by):
        return group_by(record)
    if group_by == "parent":
        return Path(record.image).parent.name
    if group_by == "source":
        return record.group
    relative = Path(record.image).relative_to(root) if Path(record.image).is_relative_to(root) else None
    return relative.parts[0] if relative is not None and len(relative.parts) > 1 else None


def _random_split(rows: list, groups: list, eval_ratio: float, seed: int) -> list[str]:
    """``"train"``/``"eval"`` per row; whole groups go to eval when groups are given."""
    rng = random.Random(seed)
    if any(g is not None for g in groups):
        names = sorted({g for g in groups if g is not None})
        rng.shuffle(names)
        sizes = {g: groups.count(g) for g in names}
        chosen, total = set(), 0
        for g in names:
            if total >= eval_ratio * len(rows):
                break
            chosen.add(g)
            total += sizes[g]
        return ["eval" if g in chosen else "train" for g in groups]
    order = list(range(len(rows)))
    rng.shuffle(order)
    eval_rows = set(order[: round(eval_ratio * len(rows))])
    return ["eval" if i in eval_rows else "train" for i in range(len(rows))]


def _output_paths(out_csv: Path, parts: Iterable[str]) -> dict[str, Path]:
    stem = out_csv.with_suffix("")
    return {p: (out_csv if p == "all" else stem.with_name(f"{stem.name}.{p}.csv")) for p in parts}


def prepare(fmt: str, source: str | os.PathLike | Sequence[str | os.PathLike], out_csv: str | os.PathLike, *,
            split: str = "grapheme", normalization: str | None = "NFC", casefold: bool = False,
            eval_ratio: float | None = None, group_by: str | Callable[[Record], str] | None = None,
            split_by_group: str | None = None, seed: int = 0, relative: bool = True, on_error: str = "raise",
            label_regex: str | None = None, csv_delimiter: str = ";", string_split_delimiter: str = "|",
            progress: bool = True, layout: LayoutOptions | None = None) -> PrepareSummary:
    """Convert a data set in format ``fmt`` to tf-crnn CSV(s) plus an alphabet.

    See the module doc for the output files and the group split spec, and
    :mod:`tf_crnn.datasets.formats` for the formats.

    Args:
        fmt: one of :data:`~tf_crnn.datasets.formats.READERS` (``gt-pairs``,
            ``iiit5k``, ``icdar``, ``mjsynth``, ``tsv``, ``filename``, ``lmdb``,
            ``page``, ``alto``).
        source: the data set folder or annotation file, or a list of them
            (read one after the other; ``lmdb``: one only).
        out_csv: the CSV to write (with a split: the stem of the part CSVs).
        split: ``"grapheme"`` or ``"codepoint"`` symbols.
        normalization: Unicode normalization form or None.
        casefold: casefold labels.
        eval_ratio: fraction of rows (of groups, when ``group_by`` is set)
            put into ``<stem>.eval.csv``, the rest into ``<stem>.train.csv``.
        group_by: ``"parent"`` (image's folder name; ``page``/``alto``: the
            page), ``"top"`` (first folder under ``source``; not for
            ``page``/``alto``), ``"source"`` (the format's natural group, e.g.
            IIIT5K train/test, the book of a PAGE file) or a function of the
            :class:`Record`.
        split_by_group: a group split spec (needs ``group_by``).
        seed: seed of the random split.
        relative: write image paths relative to the CSV (else absolute).
        on_error: ``"raise"``: any empty label, missing image, undecodable or
            malformed row aborts with :class:`ConversionError` before anything
            is written; ``"skip"``: such rows are left out and listed in the
            summary. Rows with unwritable symbols are always skipped and listed.
        label_regex: ``filename`` format only: regex whose first group is the label.
        csv_delimiter: CSV field separator of the output.
        string_split_delimiter: symbol separator of the output.
        progress: show a tqdm progress bar (``page``/``alto``: over pages).
        layout: ``page``/``alto`` only: text index, images folder, METS file
            and groups (:class:`~tf_crnn.datasets.layout.LayoutOptions`).

    Returns:
        A :class:`PrepareSummary`.

    Raises:
        ValueError: unknown format or option, bad split spec, or no row left;
            ``page``/``alto``: a folder without such files, a METS file
            without the page group.
        FileNotFoundError: the source does not exist.
        ConversionError: rows that cannot be converted and ``on_error="raise"``
            (lists file:line and reason of each).
        ImportError: ``lmdb`` without the lmdb package.
    """
    roots = [Path(s).absolute() for s in ([source] if isinstance(source, (str, os.PathLike)) else source)]
    reader = _check_options(fmt, split, on_error, eval_ratio, group_by, split_by_group, len(roots))
    group_split = parse_group_split(split_by_group) if split_by_group else None
    out_csv = Path(out_csv).absolute()
    root = roots[0] if len(roots) == 1 else Path(os.path.commonpath(roots))
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(dir=out_csv.parent, prefix=f".{out_csv.stem}_images.tmp-") \
        if fmt in WRITES_IMAGES else None
    try:
        options = dict(staging=staging, label_regex=label_regex, layout=layout,
                       progress=progress and fmt in LAYOUT_FORMATS)
        rows, groups, problems, skipped = _collect(reader, roots, options, group_by,
                                                   (split, normalization, casefold),
                                                   (csv_delimiter, string_split_delimiter),
                                                   progress and fmt not in LAYOUT_FORMATS)
        if problems and on_error == "raise":
            raise ConversionError(_problem_message(problems, fmt, root))
        summary = PrepareSummary(skipped=problems + skipped)
        parts = _assign_parts(rows, groups, eval_ratio, group_split, seed, summary)
        if not any(p is not None for p in parts):
            raise ValueError(f"no usable row in {root} (format {fmt}); skipped: {len(summary.skipped)}")
        if staging is not None:
            rows, summary.images_dir = _publish_images(rows, staging, out_csv)
            staging = None
        _write_outputs(rows, parts, out_csv, relative, csv_delimiter, string_split_delimiter, summary)
        return summary
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _check_options(fmt, split, on_error, eval_ratio, group_by, split_by_group, n_sources):
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(READERS)}")
    if n_sources == 0 or (fmt == "lmdb" and n_sources > 1):
        raise ValueError(f"format {fmt} reads {'one source' if fmt == 'lmdb' else 'at least one source'}, "
                         f"got {n_sources}")
    if fmt in LAYOUT_FORMATS and group_by == "top":
        raise ValueError(f"group_by='top' does not apply to {fmt} (its line images are written by prepare): "
                         "use 'source' (the book) or 'parent' (the page)")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if eval_ratio is not None and not 0 < eval_ratio < 1:
        raise ValueError(f"eval_ratio must be between 0 and 1, got {eval_ratio}")
    if eval_ratio is not None and split_by_group:
        raise ValueError("eval_ratio and split_by_group are exclusive; pick one way to split")
    if split_by_group and group_by is None:
        raise ValueError("split_by_group needs group_by (e.g. 'parent' for one folder per year)")
    if group_by is not None and not callable(group_by) and group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {GROUP_BY} or a function, got {group_by!r}")
    return READERS[fmt]


def _collect(reader, roots, options, group_by, cleaning, delimiters, progress):
    """Read and check every record of every source: (rows, groups, problems, unwritable skips)."""
    rows, groups, problems, skipped = [], [], [], []
    items = ((root, item) for root in roots for item in reader(root, **options))
    for root, item in tqdm(items, desc="reading", unit="row", disable=not progress):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        symbols = clean_label(item.text, *cleaning)
        if not symbols:
            problems.append(Problem(item.origin, f"empty label for {item.image}"))
        elif not os.path.isfile(item.image):
            problems.append(Problem(item.origin, f"image not found: {item.image}"))
        elif delimiters[0] in item.image or "\n" in item.image:
            problems.append(Problem(item.origin,
                                    f"image path contains the CSV delimiter {delimiters[0]!r}: {item.image}"))
        elif (reason := _unwritable(symbols, delimiters)) is not None:
            skipped.append(Problem(item.origin, reason))
        else:
            rows.append((item.image, symbols, item.origin))
            groups.append(_group_of(item, group_by, root))
    return rows, groups, problems, skipped


def _problem_message(problems: list[Problem], fmt: str, root: Path, limit: int = 30) -> str:
    return (f"{len(problems)} row(s) of {root} (format {fmt}) cannot be converted; nothing was written:\n"
            f"{listing(problems, limit)}\nFix them, or pass on_error='skip' (--skip-errors) to leave them out.")


def _assign_parts(rows, groups, eval_ratio, group_split, seed, summary) -> list[str | None]:
    if eval_ratio is not None:
        return _random_split(rows, groups, eval_ratio, seed)
    if group_split is None:
        return ["all"] * len(rows)
    parts = []
    for g in groups:
        part = group_split.part_of(g)
        if part is None:
            key = "(none)" if g is None else g
            summary.not_selected[key] = summary.not_selected.get(key, 0) + 1
        elif not re.fullmatch(r"[\w.-]+", part):
            raise ValueError(f"group {part!r} cannot name an output file; use explicit parts in split_by_group")
        parts.append(part)
    return parts


def _publish_images(rows, staging: str, out_csv: Path):
    """Move extracted images from the staging folder to ``<stem>_images`` (replacing an old one)."""
    final = out_csv.with_name(f"{out_csv.stem}_images")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    moved = [(str(final / Path(img).relative_to(staging)), symbols, origin) for img, symbols, origin in rows]
    return moved, str(final)


def _write_outputs(rows, parts, out_csv, relative, csv_delimiter, string_split_delimiter, summary):
    names = list(dict.fromkeys(p for p in parts if p is not None))
    paths = _output_paths(out_csv, names)
    samples = []
    for name in names:
        selected = [(img, symbols) for (img, symbols, _), p in zip(rows, parts) if p == name]
        n = write_csv(selected, paths[name], csv_delimiter, string_split_delimiter, relative=relative)
        summary.outputs[name] = (str(paths[name]), n)
        samples += [Sample(img, symbols, str(paths[name]), i) for i, (img, symbols) in enumerate(selected, 1)]
    alphabet, counts = Alphabet.build(samples)
    stem = out_csv.with_suffix("")
    summary.alphabet_path = str(stem.with_name(f"{stem.name}.alphabet.json"))
    summary.counts_path = str(stem.with_name(f"{stem.name}.alphabet.counts.json"))
    alphabet.save(summary.alphabet_path)
    save_counts(counts, summary.counts_path)
    summary.alphabet_size = len(alphabet)


def write_summary(summary: PrepareSummary, path: str | os.PathLike) -> None:
    """Save ``summary.to_dict()`` as JSON (UTF-8)."""
    Path(path).write_text(json.dumps(summary.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
