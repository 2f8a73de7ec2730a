"""Reading the text files users bring: UTF-8, with or without a byte-order mark, and nothing guessed.

Annotation CSVs, alphabet tables, lexicons, configs and word lists come from Windows editors (UTF-16 "Unicode
text", Windows-1252), spreadsheet programs (a UTF-8 byte-order mark, Latin-1), macOS and transcription tools.
Guessing an encoding silently turns ``ä`` into ``Ã¤`` in a label, so every such file is read here one way:
UTF-8 with an optional byte-order mark is accepted, anything else is a :class:`TextFileError` naming the file,
the line and the byte offset, with the command that converts it. JSON files are also refused when an object
repeats a key (``json`` would silently keep the last value, an ambiguous file).

No TensorFlow dependency: converters and command-line tools use it too.
"""
from __future__ import annotations

import codecs
import json
import os
import shlex

# UTF-32LE's mark begins with UTF-16LE's, so the 32-bit marks are tried first.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32LE"), (codecs.BOM_UTF32_BE, "UTF-32BE"),
    (codecs.BOM_UTF16_LE, "UTF-16LE"), (codecs.BOM_UTF16_BE, "UTF-16BE"),
)


class TextFileError(ValueError):
    """A user's text file is not UTF-8, or its content is ambiguous; the message names the file and what to do."""


def convert_command(path: str, encoding: str) -> str:
    """The shell command that re-encodes ``path`` from ``encoding`` to UTF-8 beside it (``NAME.utf8.EXT``)."""
    root, ext = os.path.splitext(path)
    return f"iconv -f {encoding} -t UTF-8 {shlex.quote(path)} > {shlex.quote(root + '.utf8' + ext)}"


def decode_text(data: bytes, path: str | os.PathLike, what: str = "file") -> str:
    """``data`` decoded as UTF-8 (a leading byte-order mark dropped).

    Args:
        data: the file's bytes.
        path: the file, for the message.
        what: what the file is to the user ("annotation CSV", "alphabet", ...), for the message.

    Returns:
        The text, line ends as they were.

    Raises:
        TextFileError: a UTF-16 / UTF-32 byte-order mark, NUL bytes (UTF-16 without a mark, or a binary file), or
            bytes that are not UTF-8 (the message gives the line and byte offset of the first one).
    """
    path = os.fspath(path)
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise TextFileError(f"{path}: the {what} is {encoding} text (it starts with that byte-order mark); "
                                f"tf-crnn reads UTF-8. Convert it: {convert_command(path, encoding)}")
    nul = data.find(b"\0")  # before decoding: UTF-16 without a mark is often valid UTF-8 byte for byte
    if nul >= 0:
        line = data[:nul].count(b"\n") + 1
        raise TextFileError(f"{path}:{line}: the {what} contains NUL bytes (the first at byte offset {nul}): UTF-16 "
                            f"text without a byte-order mark, or not a text file. If it is UTF-16: "
                            f"{convert_command(path, 'UTF-16LE')}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise TextFileError(
            f"{path}:{line}: the {what} is not UTF-8: byte offset {e.start} holds 0x{data[e.start]:02x}, which "
            f"UTF-8 does not allow there. Re-save it as UTF-8; if it came from Windows (Excel, Notepad) it is "
            f"probably Windows-1252: {convert_command(path, 'WINDOWS-1252')}") from None
    return text


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The text of a user's file (see :func:`decode_text`).

    Raises:
        FileNotFoundError: no such file (the message says which ``what``).
        TextFileError: not UTF-8.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        return decode_text(f.read(), path, what)


def load_json(path: str | os.PathLike, what: str = "JSON file"):
    """A user's JSON file, read as :func:`read_text` reads text.

    Raises:
        FileNotFoundError: no such file.
        TextFileError: not UTF-8, not valid JSON (line and column), or an object that gives one key twice.
    """
    path = os.fspath(path)
    text = read_text(path, what)

    def unique_keys(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise TextFileError(f"{path}: the {what} gives the key {key!r} twice in one object, so which value "
                                    f"is meant is ambiguous: keep one")
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as e:
        raise TextFileError(f"{what} {path} is not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
