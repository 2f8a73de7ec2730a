"""The data set subcommands of ``tf-crnn``: prepare, alphabet, generate, fonts, validate.

:func:`register` adds them to the top-level parser's subparsers; each sets
``func=handler`` where ``handler(args) -> int`` is the exit code
(:mod:`tf_crnn.cli.errors`): 0 success, 1 the data has problems (unknown
symbols, unconvertible rows, undecodable images...), 2 bad usage or
unreadable input. The library code is in :mod:`tf_crnn.datasets`.

Examples::

    tf-crnn generate numbers data/generated/digits -n 5000 --seed 0
    tf-crnn generate text data/generated/words -n 2000 --max-words 3 --fonts system
    tf-crnn generate text data/generated/fraktur_lines -n 1000 --fonts data/fonts/fraktur \
        --from-csv data/prepared/fraktur.train.csv --lines --case keep --alphabet data/alphabets/fraktur.json
    tf-crnn fonts check data/fonts/fraktur --alphabet data/alphabets/fraktur.json --csv data/prepared/fraktur.train.csv
    tf-crnn prepare gt-pairs ../shared/data/archiscribe data/prepared/fraktur.csv \\
        --group-by parent --split-by-group "train=0,1 eval=2 mod=5"
    tf-crnn prepare iiit5k ../shared/data/iiit5k data/prepared/iiit5k.csv --group-by source --split-by-group each
    tf-crnn prepare filename ../shared/data/plates data/prepared/plates.csv --eval-ratio 0.1
    tf-crnn prepare page ../shared/data/ocrd-kant-1784/OCR-D-GT-PAGE data/prepared/kant.csv
    tf-crnn prepare alto ../shared/data/ocrd-kant-1784/mets.xml data/prepared/kant-alto.csv \
        --page-group OCR-D-GT-ALTO --image-group OCR-D-IMG
    tf-crnn alphabet build data/prepared/fraktur.train.csv -o fraktur.json --min-count 2
    tf-crnn alphabet check fraktur.json data/prepared/fraktur.eval.csv
    tf-crnn validate data/prepared/fraktur.train.csv --alphabet fraktur.json --config experiments/fraktur.json
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from ..config import PREPARE_FORMAT_NAMES, UNICODE_NORMALIZATION_NAMES
from ..datasets.text_spec import CASES, TextSpec
from .errors import handles


def add_delimiters(p: argparse.ArgumentParser) -> None:
    """The CSV format options (config keys ``csv_delimiter``, ``string_split_delimiter``)."""
    p.add_argument("--csv-delimiter", default=";", help="between image path and label (default ;)")
    p.add_argument("--string-split-delimiter", default="|", help="between a label's symbols (default |)")


def add_unicode_form(p: argparse.ArgumentParser) -> None:
    """The form labels and tables are compared in (config key ``unicode_normalization``)."""
    p.add_argument("--unicode-normalization", choices=UNICODE_NORMALIZATION_NAMES, default="NFC",
                   help="Unicode form labels and table symbols are compared in, as the training's "
                        "unicode_normalization (default NFC)")


def _add_generator_options(p: argparse.ArgumentParser, height: int) -> None:
    """What every synthetic generator takes: output folder, count, seed, height (default ``height``), processes."""
    p.add_argument("out_dir", help="output folder")
    p.add_argument("-n", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=height, help="minimum height; each image is 1-1.5x this")
    p.add_argument("--workers", type=int, help="processes (default: CPU count)")
    p.add_argument("--no-progress", action="store_true")


# --------------------------------------------------------------------------- prepare

@handles("prepare")
def _prepare(args: argparse.Namespace) -> int:
    from ..datasets.converters import prepare, write_summary
    from ..datasets.formats import LAYOUT_FORMATS
    from ..datasets.layout import LayoutOptions

    layout_options = ("text_index", "images", "mets", "image_group", "page_group")
    given = [name for name in layout_options if getattr(args, name) is not None]
    if given and args.format not in LAYOUT_FORMATS:
        raise ValueError(f"--{given[0].replace('_', '-')} applies to the page and alto formats only")
    if args.text_index is not None and args.format != "page":
        raise ValueError("--text-index applies to PAGE XML only (ALTO has one text per String)")
    summary = prepare(
        args.format, args.source, args.out_csv, split=args.split,
        normalization=None if args.normalization == "none" else args.normalization,
        casefold=args.casefold, eval_ratio=args.eval_ratio, group_by=args.group_by,
        split_by_group=args.split_by_group, seed=args.seed, relative=not args.absolute,
        on_error="skip" if args.skip_errors else "raise", label_regex=args.label_regex,
        csv_delimiter=args.csv_delimiter, string_split_delimiter=args.string_split_delimiter,
        progress=not args.no_progress,
        layout=LayoutOptions(**{name: getattr(args, name) for name in layout_options}),
    )
    print(summary)
    if args.summary_json:
        write_summary(summary, args.summary_json)
    return 0


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare", help="convert an annotated data set to tf-crnn CSV(s) and an alphabet",
        description="Convert a data set to CSV(s) + <stem>.alphabet.json + <stem>.alphabet.counts.json. "
                    "With a split, writes <stem>.<part>.csv per part instead of OUT_CSV. "
                    "Formats: gt-pairs (<id>.png + <id>.gt.txt/.txt), iiit5k (.mat), icdar (word_1.png, \"label\"), "
                    "mjsynth (label in file name), tsv (path<TAB>label or path label), filename (stem = label), "
                    "lmdb (num-samples/image-%%09d/label-%%09d, images extracted to <stem>_images/), "
                    "page / alto (PAGE XML / ALTO files, folders of them or a METS file: every text line cut out "
                    "to <stem>_images/<page>/).",
    )
    p.add_argument("format", choices=PREPARE_FORMAT_NAMES)
    p.add_argument("source", nargs="+",
                   help="data set folder or annotation file (page, alto: several files, folders or a METS file)")
    p.add_argument("out_csv", help="CSV to write (with a split: the stem of <stem>.<part>.csv)")
    p.add_argument("--split", choices=("grapheme", "codepoint"), default="grapheme",
                   help="label symbols: grapheme clusters (default; 'aͤ' is one symbol) or code points")
    p.add_argument("--normalization", choices=("NFC", "NFD", "NFKC", "NFKD", "none"), default="NFC")
    p.add_argument("--casefold", action="store_true", help="casefold labels (ß becomes ss)")
    p.add_argument("--eval-ratio", type=float, help="random train/eval split; whole groups with --group-by")
    p.add_argument("--group-by", choices=("parent", "top", "source"),
                   help="group rows by the image's folder name (parent), first folder under SOURCE (top) "
                        "or the format's own split (source: IIIT5K train/test)")
    p.add_argument("--split-by-group", metavar="SPEC",
                   help="'train=0,1 eval=2 mod=5' (group %% 5), 'train=1800-1850 eval=1851-1900', "
                        "'train=train eval=test' or 'each' (one CSV per group); groups in no part are left out")
    p.add_argument("--seed", type=int, default=0, help="seed of --eval-ratio")
    p.add_argument("--absolute", action="store_true", help="absolute image paths (default: relative to the CSV)")
    p.add_argument("--skip-errors", action="store_true",
                   help="leave out rows with empty labels, missing images, bad encoding (listed) instead of failing")
    p.add_argument("--label-regex", help="filename format: regex on the stem whose first group is the label")
    p.add_argument("--text-index", type=int,
                   help="page: the TextEquiv/@index to read (default: index 1, else the first TextEquiv)")
    p.add_argument("--images", metavar="DIR",
                   help="page, alto: folder of the page images when the XML's reference does not lead to them")
    p.add_argument("--mets", metavar="METS_XML",
                   help="page, alto: the METS file that pairs page files with images (default: the mets.xml of "
                        "the workspace, the nearest folder above the XML holding one)")
    p.add_argument("--image-group", metavar="USE",
                   help="page, alto: the METS file group of the page images (e.g. OCR-D-IMG)")
    p.add_argument("--page-group", metavar="USE",
                   help="page, alto with a METS file as source: its file group to read (e.g. OCR-D-GT-PAGE)")
    add_delimiters(p)
    p.add_argument("--summary-json", help="also save the summary as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_prepare)


# --------------------------------------------------------------------------- alphabet

@handles("alphabet build")
def _alphabet_build(args: argparse.Namespace) -> int:
    from ..datasets.alphabet_tools import build_table, counts_path_for, format_counts

    alphabet, counts = build_table(args.csv, args.output, args.min_count, args.csv_delimiter,
                                   args.string_split_delimiter, args.unicode_normalization)
    print(format_counts(counts))
    dropped = sorted(s for s, n in counts.items() if n < args.min_count)
    if dropped:
        print(f"dropped {len(dropped)} symbol(s) seen fewer than {args.min_count} times: {dropped}")
    print(f"{len(alphabet)} symbols -> {args.output} (counts: {counts_path_for(args.output)})")
    return 0


@handles("alphabet check")
def _alphabet_check(args: argparse.Namespace) -> int:
    from ..datasets.alphabet_tools import check_table

    report = check_table(args.table, args.csv, args.csv_delimiter, args.string_split_delimiter,
                         args.unicode_normalization)
    print(report)
    return 0 if report.ok else 1


def _add_alphabet(sub) -> None:
    p = sub.add_parser("alphabet", help="build or check an alphabet lookup table")
    actions = p.add_subparsers(dest="alphabet_command", required=True)
    b = actions.add_parser("build", help="build table.json (+ table.counts.json) from CSVs")
    b.add_argument("csv", nargs="+", help="annotation CSVs or compiled folders (tf-crnn compile)")
    b.add_argument("-o", "--output", required=True, help="lookup table JSON to write")
    b.add_argument("--min-count", type=int, default=1, help="drop symbols seen fewer times")
    c = actions.add_parser("check", help="list label symbols missing from a table (exit 1 if any)")
    c.add_argument("table", help="lookup table JSON")
    c.add_argument("csv", nargs="+", help="annotation CSVs or compiled folders (tf-crnn compile)")
    for parser in (b, c):
        add_delimiters(parser)
        add_unicode_form(parser)
    b.set_defaults(func=_alphabet_build)
    c.set_defaults(func=_alphabet_check)


# --------------------------------------------------------------------------- generate

@handles("generate numbers")
def _generate_numbers(args: argparse.Namespace) -> int:
    from ..datasets.synthetic import generate_numbers

    csv_path = generate_numbers(args.out_dir, args.n, seed=args.seed, min_length=args.min_length,
                                max_length=args.max_length, height=args.height, workers=args.workers,
                                progress=not args.no_progress, style=args.style, fonts=args.fonts,
                                max_rotation=args.max_rotation, max_perspective=args.max_perspective)
    print(f"{args.n} images -> {csv_path}")
    return 0


@handles("generate text")
def _generate_text(args: argparse.Namespace) -> int:
    import warnings

    from ..datasets.synthetic import generate_text

    # Every TextSpec field is an option of the same name (dest), so a new field cannot be left out here.
    spec = TextSpec(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TextSpec)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        csv_path = generate_text(args.out_dir, args.n, spec, seed=args.seed, workers=args.workers,
                                 progress=not args.no_progress)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"tf-crnn generate text: WARNING: {w.message}", file=sys.stderr)
    print(f"{args.n} images -> {csv_path}")
    print(_font_summary(os.path.join(os.path.dirname(csv_path), "fonts.json")))
    return 0


def _font_summary(path: str) -> str:
    """Per font: images drawn and what it lacks (from ``fonts.json``), for the terminal."""
    import json

    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    lines = [f"fonts ({path}):"]
    for font in record["fonts"]:
        lacks = list(font["lacks"])
        shown = f"lacks {len(lacks)}: {' '.join(lacks[:20])}{' ...' if len(lacks) > 20 else ''}" if lacks \
            else "draws every symbol"
        lines.append(f"  {os.path.basename(font['font'])}: {font['images']} images, "
                     f"draws {font['texts_drawable']}/{record['texts']} texts, {shown}")
    for font in record["not_used"]:
        lines.append(f"  {os.path.basename(font['font'])}: not used: {font['reason']}")
    return "\n".join(lines)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="render synthetic training data (images + labels.csv + alphabet.json)")
    kinds = p.add_subparsers(dest="generate_command", required=True)
    n = kinds.add_parser("numbers", help="digit strings, printed (DejaVu fonts) or handwritten (scikit-learn digits)")
    n.add_argument("--min-length", type=int, default=3)
    n.add_argument("--max-length", type=int, default=8)
    n.add_argument("--style", choices=("printed", "handwritten"), default="printed")
    n.add_argument("--max-rotation", type=float, default=3.0, metavar="DEG",
                   help="rotate each image by up to DEG degrees either way (default 3)")
    n.add_argument("--max-perspective", type=float, default=0.05, metavar="F",
                   help="move each corner of the text by up to F x its height: perspective, shear and scale "
                        "(default 0.05; 0.2 is strong)")
    t = kinds.add_parser(
        "text", help="words or lines of text in several fonts",
        description="Render words or lines from a word list, a text file or the labels of CSVs, each image in "
                    "a font that draws all its symbols (checked code point by code point; fonts.json in OUT_DIR "
                    "says per font what it lacks and how many images it drew).")
    t.add_argument("--words", help="word list or text corpus (UTF-8; default: built-in English words unless "
                                   "--from-csv); with --lines, a text file of one line per image")
    t.add_argument("--from-csv", dest="csv", nargs="+", metavar="CSV",
                   help="annotation CSV(s) whose labels are the text: their words (as often as they occur), "
                        "or with --lines the labels themselves")
    t.add_argument("--lines", action="store_true", help="one whole line of the source per image")
    t.add_argument("--min-words", type=int, default=TextSpec.min_words,
                   help=f"words per image, at least (default {TextSpec.min_words})")
    t.add_argument("--max-words", type=int, default=TextSpec.max_words,
                   help=f"words per image, at most (default {TextSpec.max_words})")
    t.add_argument("--case", choices=CASES, default=TextSpec.case,
                   help="mixed: 15%% upper case, 15%% first letter upper; keep: the source's case "
                        f"(default {TextSpec.case})")
    t.add_argument("--historic-s", action="store_true",
                   help="spell s as long s (ſ) inside words, as historic German print does (texts with a ſ are kept)")
    t.add_argument("--alphabet", help="lookup table JSON: leave out texts with symbols it lacks")
    t.add_argument("--color", action="store_true", help="RGB images (default greyscale)")
    t.add_argument("--max-rotation", type=float, default=TextSpec.max_rotation, metavar="DEG",
                   help=f"rotate by up to DEG degrees either way (default {TextSpec.max_rotation:g}; lines: 0.5)")
    t.add_argument("--max-perspective", type=float, default=TextSpec.max_perspective, metavar="F",
                   help="move each corner by up to F x the text height: perspective, shear, scale "
                        f"(default {TextSpec.max_perspective:g})")
    t.add_argument("--elastic", type=float, default=TextSpec.elastic,
                   help="elastic distortion, fraction of height (0 = off)")
    t.add_argument("--max-spacing", type=float, default=TextSpec.max_spacing, metavar="F",
                   help=f"extra space between letters up to F x the font size (default {TextSpec.max_spacing:g}; "
                        "printed lines: 0.08)")
    t.add_argument("--blur", type=float, default=TextSpec.blur, metavar="PX",
                   help=f"largest Gaussian blur radius (default {TextSpec.blur:g})")
    t.add_argument("--ink-bleed", type=float, default=TextSpec.ink_bleed, metavar="S",
                   help=f"ink bleed / erosion strength 0..1, on half of the images (default {TextSpec.ink_bleed:g})")
    t.add_argument("--speckles", type=float, default=TextSpec.speckles, metavar="S",
                   help=f"specks on the paper and holes in the ink, strength 0..1 (default {TextSpec.speckles:g})")
    t.add_argument("--binarize", type=float, default=TextSpec.binarize, metavar="P",
                   help="share 0..1 of the images made black and white, as bitonal scans "
                        f"(default {TextSpec.binarize:g})")
    t.add_argument("--invert", type=float, default=TextSpec.invert, metavar="P",
                   help="share 0..1 of the images with light text on a dark ground, as on signs "
                        f"(default {TextSpec.invert:g})")
    add_delimiters(t)
    _add_generator_options(n, height=32)
    _add_generator_options(t, height=TextSpec.height)
    n.add_argument("--fonts", help="font folder for printed style (default: matplotlib's DejaVu)")
    t.add_argument("--fonts", nargs="+",
                   help="font folders or files, or 'system' for /usr/share/fonts (default: matplotlib's DejaVu)")
    n.set_defaults(func=_generate_numbers)
    t.set_defaults(func=_generate_text)


# --------------------------------------------------------------------------- fonts

@handles("fonts check")
def _fonts_check(args: argparse.Namespace) -> int:
    from ..alphabet import Alphabet
    from ..datasets.fonts import check_fonts
    from ..datasets.synthetic import csv_texts, font_files, read_lines

    if not (args.alphabet or args.csv or args.words):
        raise ValueError("give the symbols to check: --alphabet, --csv and/or --words")
    symbols = list(Alphabet.from_file(args.alphabet).lookup) if args.alphabet else []
    texts = None
    if args.csv or args.words:
        texts = []
        if args.csv:
            texts += csv_texts(args.csv, args.csv_delimiter, args.string_split_delimiter)
        if args.words:
            texts += read_lines(args.words)
    report = check_fonts(font_files(args.fonts or None), symbols, texts)
    print(report.format())
    return 0 if report.ok else 1


def _add_fonts(sub) -> None:
    p = sub.add_parser("fonts", help="check which symbols fonts can draw")
    actions = p.add_subparsers(dest="fonts_command", required=True)
    c = actions.add_parser(
        "check", help="per font, the symbols it cannot draw; the symbols no font draws (exit 1 if any)",
        description="Checks every code point of every symbol (a base letter and each combining mark on its own: "
                    "'aͤ' needs a and U+0364) against each font: a code point the font draws as nothing or as its "
                    ".notdef box is missing. Symbol and dingbat fonts (letters mapped to other glyphs) are "
                    "reported as not usable. Exit 0 when every symbol has a font, 1 when some has none.")
    c.add_argument("fonts", nargs="*",
                   help="font files or folders, or 'system' for /usr/share/fonts (default: matplotlib's DejaVu)")
    c.add_argument("--alphabet", help="lookup table JSON: check its symbols")
    c.add_argument("--csv", nargs="+", help="annotation CSVs: check their labels' symbols, count them, and "
                                            "tell how many labels each font draws whole")
    c.add_argument("--words", help="a UTF-8 text file (word list, corpus): check its symbols, per line")
    add_delimiters(c)
    c.set_defaults(func=_fonts_check)


# --------------------------------------------------------------------------- validate

@handles("validate")
def _validate(args: argparse.Namespace) -> int:
    from ..datasets.validate import validate

    report = validate(args.csv, args.alphabet, params=args.config, report_dir=args.report_dir,
                      progress=not args.no_progress, eval_csv_files=args.eval or ())
    print(report.format(max_listed=args.max_listed))
    return 0 if report.ok else 1


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="decode every image, check labels vs alphabet and CTC length, histograms")
    p.add_argument("csv", nargs="+", help="annotation CSVs or compiled folders (tf-crnn compile; every shard is "
                                          "hashed against its manifest)")
    p.add_argument("--alphabet", required=True, help="lookup table JSON")
    p.add_argument("--config", help="training config JSON (height, width bounds, pooling, unicode_normalization; "
                                    "default: defaults)")
    p.add_argument("--eval", nargs="+", metavar="CSV", help="the eval split's CSVs: list the images both splits "
                                                            "name (a train/eval leak)")
    p.add_argument("--report-dir", help="where widths.png / label_lengths.png go (default: <first csv>.validate/)")
    p.add_argument("--max-listed", type=int, default=50, help="lines listed per problem kind")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_validate)


def register(subparsers) -> None:
    """Add ``prepare``, ``alphabet`` (build/check), ``generate`` (numbers/text), ``fonts`` (check) and ``validate``.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.
    """
    _add_prepare(subparsers)
    _add_alphabet(subparsers)
    _add_generate(subparsers)
    _add_fonts(subparsers)
    _add_validate(subparsers)

