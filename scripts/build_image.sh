#!/usr/bin/env bash
# Build tf-crnn's CPU image and train the default job inside it, on a machine with neither Docker nor Docker Hub:
# Debian's podman and mmdebstrap (apt-get install podman mmdebstrap uidmap fuse-overlayfs slirp4netns runc), as root.
#
#   scripts/build_image.sh                  # base image (once), tf-crnn:cpu, then train config_template.json in it
#   TF_CRNN_IMAGE_WORK=/tmp/x scripts/build_image.sh     # artefacts elsewhere (default: build/container, git-ignored)
#
# What it does:
#   1. base: a Debian bookworm minbase root file system with python3 (3.11, the lock files' Python), pip and
#      ca-certificates, made by mmdebstrap from Debian's package mirror and imported as localhost/debian-py311:bookworm
#      (skipped when that image exists);
#   2. image: `podman build --isolation chroot` of the Dockerfile on that base with requirements/cpu.txt (tensorflow-cpu
#      and every other package from the lock, hashes checked) -> tf-crnn:cpu;
#   3. training: the image's default command (python train.py with config_template.json: 3,000 generated digit images,
#      6 epochs) in a container without network, output/ mounted from $TF_CRNN_IMAGE_WORK/output, no MongoDB URL: the
#      run goes to the embedded SecantusDB server, started inside the container, its data kept in the volume;
#   4. checks, in a second container on the same volume: the run is in that database and COMPLETED (written to
#      $TF_CRNN_IMAGE_WORK/runs.json), the export is in the volume.
# Where this machine cannot start containers at all (or with PODMAN_RUN_OPTS=none), steps 3-4 run as RUN steps of a
# throw-away image instead, and output/ is copied out of it.
#
# Run here on Dec 7, 2026 (Debian bookworm, 2 CPU cores shared with other jobs, under nice), from nothing (no
# base, no cached layer), in wall time: 4 min 41 s in all when the machine was quiet (base 26 s, image 85 s,
# training 165 s, checks 3 s), 10 min when it was busy (base 100 s, image 241 s, training 239 s). pip downloads
# 440 MB from PyPI; tf-crnn:cpu is 2.27 GB, the base 245 MB. Best eval CER after the 6 epochs: 0 to 0.008 over
# three builds (the digits are generated anew each time). This machine is itself a container: crun can neither
# set podman's default RLIMIT_NPROC/NOFILE here nor handle its hybrid cgroups, so the containers run with runc and
# lower limits (PODMAN_RUN_OPTS replaces the probe below).
#
# A plan, not done here: the GPU image (the Dockerfile's default BASE=tensorflow/tensorflow:2.21.0-gpu) needs
# Docker Hub, which this machine cannot reach, and a GPU to train on; `docker build -t tf-crnn .` then
# `docker run --gpus all ... tf-crnn` (Dockerfile) build and train it where both are.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${TF_CRNN_IMAGE_WORK:-build/container}
base=localhost/debian-py311:bookworm
image=${TF_CRNN_IMAGE:-localhost/tf-crnn:cpu}
for tool in podman mmdebstrap; do
    if ! command -v "$tool" >/dev/null; then
        echo "build_image.sh: $tool is not installed (apt-get install podman mmdebstrap uidmap fuse-overlayfs)" >&2
        exit 2
    fi
done
mkdir -p "$work"
work=$(cd "$work" && pwd)
exec > >(tee "$work/build.log") 2>&1   # everything below also kept in build.log

step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }
took() { echo "== took $(($(date +%s) - $1)) s"; }

step "1. base image $base"
t=$(date +%s)
if podman image exists "$base"; then
    echo "$base exists: kept (podman rmi $base to make it again)"
else
    # minbase: apt, dpkg and the essential set only; python-is-python3 for the image's `python` entry point.
    mmdebstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
        bookworm "$work/rootfs.tar"
    podman import --change 'CMD ["/bin/bash"]' "$work/rootfs.tar" "$base"
    rm "$work/rootfs.tar"
fi
took "$t"

step "2. image $image"
t=$(date +%s)
# The host's CA bundle is lent to the RUN steps (mounted, not copied into the image): pip then trusts what the host
# trusts, e.g. a proxy that inspects TLS (this machine's egress does; without it pip fails with
# CERTIFICATE_VERIFY_FAILED). TF_CRNN_BUILD_CA= (empty) builds with the base's own CA list.
ca=${TF_CRNN_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}
ca_mount=()
[ -n "$ca" ] && [ -f "$ca" ] && ca_mount=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
podman build --isolation chroot "${ca_mount[@]}" --build-arg "BASE=$base" --build-arg LOCK=requirements/cpu.txt \
    --build-arg BASE_PROVIDES= -t "$image" .
took "$t"

# Options under which this machine can start a container: none, or runc with the limits this shell already has.
run_opts=()
if [ -n "${PODMAN_RUN_OPTS+set}" ]; then
    read -ra run_opts <<<"$PODMAN_RUN_OPTS"
elif ! podman run --rm --network none --entrypoint true "$image" 2>/dev/null; then
    run_opts=(--runtime runc --ulimit "nofile=$(ulimit -n):$(ulimit -n)" --ulimit "nproc=4096:4096")
    if ! command -v runc >/dev/null \
        || ! podman run --rm "${run_opts[@]}" --network none --entrypoint true "$image"; then
        run_opts=(none)
    fi
fi

rm -rf "$work/output"
mkdir -p "$work/output"
if [ "${run_opts[*]-}" != none ]; then
    step "3. training in a container:" \
        "podman run --rm --network none ${run_opts[*]-} -v $work/output:/tf-crnn/output $image"
    t=$(date +%s)
    podman run --rm --network none "${run_opts[@]}" -v "$work/output:/tf-crnn/output" "$image" 2>&1 \
        | tee "$work/train.log"
    took "$t"

    step "4. checks in a second container on the same volume (the first one's database server ended with it)"
    t=$(date +%s)
    podman run --rm --network none "${run_opts[@]}" -v "$work/output:/tf-crnn/output" --entrypoint tf-crnn "$image" \
        runs list --json >"$work/runs.json"
    took "$t"
else
    step "3-4. this machine starts no container: training and checks as RUN steps of a throw-away image"
    t=$(date +%s)
    # (chroot isolation shares the host's network: no --network none here)
    podman build --isolation chroot -t localhost/tf-crnn-smoke -f - . <<EOF 2>&1 | tee "$work/train.log"
FROM $image
RUN python train.py with config_template.json && tf-crnn runs list --json > output/runs.json && tf-crnn db stop
EOF
    # Copied out of a created (never started) container: what the training wrote under output/.
    cid=$(podman create localhost/tf-crnn-smoke)
    podman cp "$cid:/tf-crnn/output/." "$work/output"
    podman rm "$cid" >/dev/null
    podman rmi localhost/tf-crnn-smoke >/dev/null
    mv "$work/output/runs.json" "$work/runs.json"
    took "$t"
fi

step "result"
ls -la "$work/output" "$work/output/digits" || true
cat "$work/runs.json"
python3 - "$work" <<'EOF'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
runs = json.loads((work / "runs.json").read_text())
assert runs and runs[0]["status"] == "COMPLETED", f"no COMPLETED run recorded in the container: {runs}"
export, database = work / "output" / "digits" / "export", work / "output" / ".tf_crnn" / "db" / "data"
assert export.is_dir(), f"the training left no export in the volume: {export} is missing"
assert database.is_dir(), f"the embedded database did not keep its data in the volume: {database} is missing"
run = runs[0]
print(f"run {run['id']} {run['status']}, best eval CER {run['best_cer']}; on the host: {export}, {database}")
EOF
