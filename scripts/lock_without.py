"""Print a lock file (requirements/*.txt) without some of its packages, hashes and comments of those included.

    python scripts/lock_without.py requirements/gpu.txt tensorflow 'nvidia-*' > /tmp/lock.txt
    pip install --require-hashes -r /tmp/lock.txt

The Dockerfile uses it to install the lock minus what its base image already provides (TensorFlow and CUDA in
TensorFlow's GPU image). A name ending in ``*`` matches a prefix; names compare as pip does (case and ``-``/``_``/``.``
alike). Standard library only: it runs in the base image before anything is installed.
"""
from __future__ import annotations

import fnmatch
import re
import sys

_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """A package name as pip compares it (PEP 503): lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def without(lines: list[str], patterns: list[str]) -> list[str]:
    """The lines of a lock file minus the entries whose package name matches one of ``patterns``.

    An entry is a requirement line starting in the first column and every indented line after it (its
    ``--hash`` continuations and ``# via`` comments); header comments and blank lines are kept.
    """
    wanted = [canonical(p.rstrip("*")) + ("*" if p.endswith("*") else "") for p in patterns]
    kept, skipping = [], False
    for line in lines:
        match = _REQUIREMENT.match(line)
        if match:
            skipping = any(fnmatch.fnmatchcase(canonical(match.group(1)), w) for w in wanted)
        elif not line.startswith((" ", "\t")):
            skipping = False
        if not skipping:
            kept.append(line)
    return kept


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python scripts/lock_without.py LOCK_FILE [NAME ...]   (NAME may end in *)", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError as e:
        print(f"lock_without: cannot read the lock file {argv[1]}: {e.strerror}", file=sys.stderr)
        return 2
    sys.stdout.writelines(without(lines, argv[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
