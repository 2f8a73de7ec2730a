"""The lock file a run was installed from (provenance.installed_lock): the real environment and made-up locks."""
from __future__ import annotations

import importlib.metadata

from conftest import ROOT

from tf_crnn.tracking import provenance


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_the_environment_is_recognised_against_the_repositorys_locks():
    found = provenance.installed_lock()
    # The expectation is computed here from importlib.metadata, pin by pin: the tests need not run in a venv
    # installed from requirements/test.txt, but what the record says must be what the environment is.
    matching = {}
    for lock in sorted((ROOT / "requirements").glob("*.txt")):
        pins = provenance.lock_pins(lock)
        assert pins, f"no pins read from {lock}"
        matching[f"requirements/{lock.name}"] = (all(_installed(n) == v for n, v in pins.items()), len(pins))
    assert found["matches"] == any(ok for ok, _ in matching.values())
    if found["matches"]:
        best = max((n for n, (ok, _) in matching.items() if ok), key=lambda n: matching[n][1])
        assert found["lock"] == best
        assert sorted(found["also_matching"]) == sorted(n for n, (ok, _) in matching.items() if ok and n != best)
    else:
        assert found["lock"] in matching and found["differences"]
    # test.txt pins every extra the tests use: the environment the README's test command makes matches it.
    if matching["requirements/test.txt"][0]:
        assert found["lock"] == "requirements/test.txt"


def test_a_lock_with_a_wrong_version_is_the_closest_with_its_differences(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "requirements").mkdir()
    numpy, pytest_version = _installed("numpy"), _installed("pytest")
    (tmp_path / "requirements" / "right.txt").write_text(
        f"# via uv\nnumpy=={numpy} \\\n    --hash=sha256:00\n    # via tf-crnn\n")
    (tmp_path / "requirements" / "wrong.txt").write_text(
        f"NumPy=={numpy} \\\n    --hash=sha256:00\npytest==0.0.1 \\\n    --hash=sha256:11\n"
        "no-such-distribution-xyz==1.0\n")
    found = provenance.installed_lock(tmp_path)
    assert found == {"lock": "requirements/right.txt", "matches": True, "also_matching": []}

    (tmp_path / "requirements" / "right.txt").unlink()
    found = provenance.installed_lock(tmp_path)
    assert found == {"lock": "requirements/wrong.txt", "matches": False, "different": 2,
                     "differences": ["no-such-distribution-xyz: locked 1.0, not installed",
                                     f"pytest: locked 0.0.1, installed {pytest_version}"]}


def test_without_lock_files_the_record_says_so(tmp_path):
    # An installed wheel: site-packages holds tf_crnn/ but no pyproject.toml nor requirements/ beside it.
    found = provenance.installed_lock(tmp_path)
    assert found["lock"] is None and found["matches"] is False
    assert found["reason"].startswith("no lock file found in ")
