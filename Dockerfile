# tf-crnn on NVIDIA GPUs (nvidia-docker / the NVIDIA Container Toolkit).
#
#   docker build -t tf-crnn .
#   docker run --gpus all -e TF_CRNN_MONGO_URL=mongodb://HOST:27017/ \
#       -v "$PWD/data:/tf-crnn/data" -v "$PWD/output:/tf-crnn/output" tf-crnn with config_template.json
#
# TensorFlow (with CUDA and cuDNN) comes from the base image, whose version must be the one
# pyproject.toml's extras name (tests/test_containers.py checks it): the package is installed
# without its `cpu` / `gpu` extra so pip does not replace the image's TensorFlow.
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    TF_CRNN_HOME=/tf-crnn/output/.tf_crnn

WORKDIR /tf-crnn

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir tf_crnn && touch tf_crnn/__init__.py && pip install -e . && rm -rf tf_crnn

COPY . .
RUN pip install --no-deps -e . && python -c "import tf_crnn.experiment.experiments, tensorflow as tf; print('TensorFlow', tf.__version__)"

# Runs go to $TF_CRNN_MONGO_URL (docker-compose.yml sets it), else to an embedded SecantusDB
# server kept under output/ (TF_CRNN_HOME). Several machines: set TF_CONFIG on each (README).
ENTRYPOINT ["python", "train.py"]
CMD ["with", "config_template.json"]
