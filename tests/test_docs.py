"""The documentation cannot drift from the code: the configuration reference and the quick start.

The site itself is built by ``mkdocs build --strict`` in ``.ci/run`` (a broken link or a renamed module fails
there); these tests check what a build would not notice.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import shlex
import sys

import pytest
from conftest import ROOT

from tf_crnn.config import Params


@pytest.fixture(scope="module")
def hook():
    """docs/hooks/config_reference.py, the MkDocs hook that writes the configuration reference."""
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs" / "hooks" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _documented(hook, doc: str) -> list[str]:
    return [name for entry in hook.docstring_entries(doc) for name in entry.names]


def test_every_params_field_is_documented_once(hook):
    fields = [f.name for f in dataclasses.fields(Params)]
    documented = _documented(hook, Params.__doc__)
    assert sorted(set(fields) - set(documented)) == [], "Params fields without an entry in Params' docstring"
    assert sorted(set(documented) - set(fields)) == [], "Params' docstring documents keys Params does not have"
    assert len(documented) == len(set(documented)), "a key documented twice"


def test_docstring_check_catches_a_missing_and_a_stale_entry(hook):
    """The check above can fail: a docstring that lacks a field or names a gone one is caught."""
    without_dropout = "\n".join(line for line in Params.__doc__.splitlines() if "dropout: dropout rate" not in line)
    assert "dropout" not in _documented(hook, without_dropout)
    stale = Params.__doc__.replace("        use_stn:", "        use_stm:")
    assert "use_stm" in _documented(hook, stale) and "use_stn" not in _documented(hook, stale)
    with pytest.raises(ValueError, match="entry without 'name: description'"):
        hook.docstring_entries("Summary.\n\n    Group\n        two words: text\n")


def test_reference_table_has_every_field_with_its_default(hook):
    table = hook.reference_markdown()
    for f in dataclasses.fields(Params):
        assert f"`{f.name}`" in table
    row = next(line for line in table.splitlines() if line.startswith("| `n_epochs` |"))
    assert row.split(" | ")[1:3] == ["int", "`10`"]
    page = (ROOT / "docs" / "guide" / "configuration.md").read_text(encoding="utf-8")
    assert hook.MARKER in page
    assert "docs/hooks/config_reference.py" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def _readme_commands() -> list[str]:
    """The indented command lines of the README's quick start."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]


def _pip_installs(commands: list[str]) -> list[list[str]]:
    """Each ``pip install`` as its arguments, with ``python -m`` and ``-q`` left out."""
    installs = []
    for command in commands:
        for part in command.split("&&"):
            words = [w for w in shlex.split(part) if w != "-q"]
            if words[:3] == ["python", "-m", "pip"]:
                words = words[2:]
            if words[:2] == ["pip", "install"]:
                installs.append(words[2:])
    return installs


def test_readme_quick_start_installs_as_ci_does():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    train, tests = commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if re.match(r"\s*python -m pip install", line)]
    assert _pip_installs(ci) == _pip_installs([tests])
    assert _pip_installs(ci)[0] == ["--require-hashes", "-r", "requirements/test.txt"]
    # The training command installs the CPU lock file the same way, then the package the same way.
    assert _pip_installs([train]) == [["--require-hashes", "-r", "requirements/cpu.txt"], _pip_installs(ci)[1]]
    for install in _pip_installs(commands):
        if "-r" in install:
            assert (ROOT / install[install.index("-r") + 1]).is_file()


def test_getting_started_repeats_the_quick_start_verbatim():
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    for command in _readme_commands():
        assert command in page


def test_readme_links_point_to_files():
    """The README is read on GitHub, outside the site's strict build: its relative links must exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert len(targets) > 10
    assert [t for t in targets if not (ROOT / t).exists()] == []
