#!/usr/bin/env bash
# Run the test suite against the newest releases that pyproject.toml allows, not the lock files: what
# `scripts/lock.sh --upgrade` would bring. A fresh virtual environment in ${VENV:-.venv-newest}, so the locked
# .venv is left alone. Exit code: pytest's.
#
#   scripts/check_newest.sh                 # the whole suite
#   scripts/check_newest.sh -k "csv or db"  # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv-newest}
rm -rf "$venv"
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[cpu,test,docs]"
echo "newest releases installed in $venv; differences from requirements/test.txt:"
python - <<'EOF'
import re
from importlib.metadata import distributions

locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", open("requirements/test.txt", encoding="utf-8").read(), re.M))
locked = {name.lower().replace("_", "-"): version for name, version in locked.items()}
for dist in sorted(distributions(), key=lambda d: d.metadata["Name"].lower()):
    name = dist.metadata["Name"].lower().replace("_", "-")
    if name in locked and locked[name] != dist.version:
        print(f"  {name}: locked {locked[name]}, newest {dist.version}")
EOF
python -m pytest -q -ra "$@"
