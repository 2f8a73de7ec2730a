"""Write the text corpus the `latin-print` pretrained model is rendered from.

Printed books set words between punctuation, numbers and quotation marks; word lists have none of these. This
script draws lines of 2-9 words from Debian's word lists of several languages (`wamerican`, `wngerman`, `wfrench`,
`wspanish`, `witalian`, `wportuguese`), one language per line, and sets them as print would: a capital after a
full stop, commas and other marks after words, some words in quotation marks of the language's style or in
parentheses, numbers (years, page numbers, section numbers) and a line-end hyphen on some lines. The output is
plain UTF-8, one line per text, for `tf-crnn generate text --words CORPUS --lines`.

    python scripts/latin_corpus.py data/generated/latin_corpus.txt -n 60000 --seed 0

The same seed and word lists give the same file.
"""

from __future__ import annotations

import argparse
import random
import sys
import unicodedata
from pathlib import Path

WORD_LISTS = {
    "en": "/usr/share/dict/american-english",
    "de": "/usr/share/dict/ngerman",
    "fr": "/usr/share/dict/french",
    "es": "/usr/share/dict/spanish",
    "it": "/usr/share/dict/italian",
    "pt": "/usr/share/dict/portuguese",
}
# share of the lines per language: German and English first, as the books tf-crnn's users bring
LANGUAGE_WEIGHTS = {"en": 3, "de": 3, "fr": 2, "es": 1, "it": 1, "pt": 1}
QUOTES = {"en": ("“", "”"), "de": ("„", "“"), "fr": ("« ", " »"), "es": ("«", "»"), "it": ("«", "»"),
          "pt": ("“", "”")}
AFTER_WORD = [",", ",", ",", ";", ":", ".", ".", "!", "?"]


def read_words(path: str) -> list[str]:
    """The words of a word list: letters only (apostrophes and hyphens inside kept), NFC."""
    words = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        word = unicodedata.normalize("NFC", line.strip())
        if word and word[0].isalpha() and all(c.isalpha() or c in "'-" for c in word):
            words.append(word)
    return words


def number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return str(rng.randint(1500, 1950))
    if kind < 0.7:
        return str(rng.randint(1, 400))
    if kind < 0.85:
        return f"{rng.randint(1, 30)}."
    return f"{rng.randint(1, 99)},{rng.randint(0, 99):02d}"


def line(rng: random.Random, words: list[str], language: str) -> str:
    n = rng.randint(2, 9)
    tokens = []
    capital = rng.random() < 0.4
    for _ in range(n):
        word = number(rng) if rng.random() < 0.06 else rng.choice(words)
        if capital:
            word = word[:1].upper() + word[1:]
        capital = False
        if rng.random() < 0.04:
            opening, closing = QUOTES[language] if rng.random() < 0.7 else ("(", ")")
            word = opening + word + closing
        if rng.random() < 0.18:
            mark = rng.choice(AFTER_WORD)
            word += mark
            capital = mark in ".!?"
        if rng.random() < 0.02:
            word += " —" if language != "en" else "—"
        tokens.append(word)
    text = " ".join(tokens)
    if rng.random() < 0.12 and text[-1].isalpha():
        text += "-"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="text file to write")
    parser.add_argument("-n", type=int, default=60000, help="lines (default 60000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    missing = [path for path in WORD_LISTS.values() if not Path(path).is_file()]
    if missing:
        print(f"error: word list(s) missing: {', '.join(missing)}; install them with scripts/install_fonts.sh "
              "and `apt-get install wfrench wspanish witalian wportuguese`", file=sys.stderr)
        return 1
    lists = {language: read_words(path) for language, path in WORD_LISTS.items()}
    rng = random.Random(args.seed)
    languages = list(LANGUAGE_WEIGHTS)
    weights = [LANGUAGE_WEIGHTS[language] for language in languages]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        for _ in range(args.n):
            language = rng.choices(languages, weights)[0]
            out.write(line(rng, lists[language], language) + "\n")
    print(f"{args.n} lines written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
