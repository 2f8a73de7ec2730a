#!/usr/bin/env bash
# Refresh the lock files in requirements/ from pyproject.toml: every package pinned, with the hashes of its
# published files, resolved for Python 3.11 on x86-64 Linux (glibc 2.28 or newer): the machines the tests run on.
#
#   scripts/lock.sh              # re-resolve keeping today's pins where pyproject.toml still allows them
#   scripts/lock.sh --upgrade    # take the newest releases (then run the tests: scripts/check_newest.sh)
#
# The README's commands, .ci/run and the Dockerfile install from these files, so every machine gets the
# versions the tests passed with. uv comes from PyPI (pip install uv) if it is not on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
upgrade=()
[ "${1:-}" = "--upgrade" ] && upgrade=(--upgrade)
if ! command -v uv >/dev/null; then
    echo "uv is not installed: pip install uv" >&2
    exit 2
fi
mkdir -p requirements
# name -> extras; setuptools is pinned too so the editable install of tf-crnn builds with --no-build-isolation.
declare -A sets=(
    [cpu]="cpu postgres"
    [gpu]="gpu postgres"
    [deploy]="cpu deploy"
    [docs]="cpu docs"
    [test]="cpu test docs postgres"
)
for name in cpu gpu deploy docs test; do
    args=()
    for extra in ${sets[$name]}; do args+=(--extra "$extra"); done
    uv pip compile pyproject.toml requirements/build.in --constraint requirements/constraints.in "${args[@]}" "${upgrade[@]}" \
        --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet \
        --custom-compile-command "scripts/lock.sh" \
        -o "requirements/$name.txt"
    echo "requirements/$name.txt: $(grep -c '^[a-zA-Z]' "requirements/$name.txt") pinned packages (extras: ${sets[$name]})"
done
