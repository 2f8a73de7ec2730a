# tf-crnn in a container. Two variants of one file, chosen by build arguments:
#
# GPU (default; NVIDIA GPUs through the NVIDIA Container Toolkit), base image from Docker Hub:
#   docker build -t tf-crnn .
#   docker run --gpus all -e TF_CRNN_MONGO_URL=mongodb://HOST:27017/ \
#       -v "$PWD/data:/tf-crnn/data" -v "$PWD/output:/tf-crnn/output" tf-crnn with config_template.json
#
# CPU (machines without a GPU), on any Debian/Ubuntu base whose python3 is 3.11 (the lock files' Python) and that
# has pip; scripts/build_image.sh makes one from Debian bookworm with mmdebstrap, builds and trains in it with podman:
#   docker build --build-arg BASE=debian-py311:bookworm --build-arg LOCK=requirements/cpu.txt \
#       --build-arg BASE_PROVIDES= -t tf-crnn:cpu .
#   docker run -v "$PWD/output:/tf-crnn/output" tf-crnn:cpu with config_template.json
ARG BASE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE}

# Which lock file the dependencies come from (requirements/*.txt: every package pinned with its hashes, made by
# scripts/lock.sh), and which of its packages the base image already provides, dropped from the lock before pip
# reads it (space-separated names; a trailing * matches a prefix).
#
# The GPU base ships TensorFlow built and tested against the CUDA and cuDNN installed beside it. Its version is the
# lock's (the tag says 2.21.0, requirements/gpu.txt pins tensorflow==2.21.0, tests/test_containers.py checks that the
# tag, pyproject.toml and the lock agree, and the build fails below if the image's TensorFlow is not the lock's), so
# the lock is used minus `tensorflow` and the `nvidia-*` CUDA wheels: installing them would add a second CUDA of
# several GB beside the image's. Every other package comes from the lock with its hashes, so the GPU image runs the same
# versions as the CPU image and the tests (requirements/gpu.txt and cpu.txt differ only in those lines, a test
# checks it). The CPU variant takes requirements/cpu.txt whole (tensorflow-cpu included) and drops nothing.
ARG LOCK=requirements/gpu.txt
ARG BASE_PROVIDES="tensorflow nvidia-*"

# PIP_BREAK_SYSTEM_PACKAGES: Debian's python3 refuses `pip install` outside a virtual environment (PEP 668). pip
# installs into /usr/local, apart from Debian's own packages, and the container holds nothing else; the GPU base
# (Ubuntu) has no such marker and its pip ignores the variable.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    TF_CRNN_HOME=/tf-crnn/output/.tf_crnn

WORKDIR /tf-crnn

# Dependencies first, in their own layer: rebuilt only when the lock files change, not on every code change.
COPY requirements/ requirements/
COPY scripts/lock_without.py scripts/
# set -f: the names are patterns for lock_without.py (nvidia-*), not for the shell. The check after pip fails the build
# when the base's TensorFlow is not the version the lock pins (a base of another tag).
RUN set -f && python scripts/lock_without.py "$LOCK" $BASE_PROVIDES > /tmp/lock.txt \
    && pip install --require-hashes -r /tmp/lock.txt && rm /tmp/lock.txt && pip check \
    && python -c "import re, sys, tensorflow as tf; \
pin = re.search(r'^tensorflow(?:-cpu)?==(\S+)', open(sys.argv[1]).read(), re.M).group(1); \
print('TensorFlow', tf.__version__, '- the lock pins', pin); \
sys.exit(0 if tf.__version__ == pin else f'the base image has another TensorFlow than {sys.argv[1]}: use its {pin}')" \
        "$LOCK"

COPY . .
RUN pip install --no-deps --no-build-isolation -e . \
    && python -c "import tf_crnn.experiment.experiments, tensorflow as tf; print('TensorFlow', tf.__version__)"

# Runs go to $TF_CRNN_MONGO_URL (docker-compose.yml sets it), else to an embedded SecantusDB server whose data is
# kept under output/ (TF_CRNN_HOME), in the volume. Several machines: set TF_CONFIG on each (docs/guide/several-machines.md).
ENTRYPOINT ["python", "train.py"]
CMD ["with", "config_template.json"]
