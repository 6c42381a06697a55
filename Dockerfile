# The image `mlc k8s render` deploys: `mlc` (the sync init container and sidecar) and
# `mlc-model-server` (the embedded server), on TensorFlow for CPUs. From the repository root:
#
#   docker build -t mlc:0.1.0 .          # the tag `mlc k8s render` names: mlc:<version>
#
# docs/container.md has the push and deploy steps. The build runs as no particular user; the
# image runs as uid 10001 and writes only to /models and /tmp (root file system read-only).

# PYTHON_IMAGE: any Debian-based image with python3.11 and its venv module on PATH as `python`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the mlc wheel, and the list of its dependencies the runtime installs ---------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# setuptools comes from the build isolation pyproject.toml asks for (setuptools>=68)
RUN python -m venv /opt/build
COPY pyproject.toml README.md ./
COPY lifecycle ./lifecycle
# requirements.txt: pyproject's dependencies less tensorflow and tensorflow-serving-api, which
# the runtime stage installs by hand (see there), so the list lives once, in pyproject.toml.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/build/bin/python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(*(d for d in deps if re.split('[^A-Za-z0-9._-]', d)[0].lower() not in ('tensorflow', 'tensorflow-serving-api')), sep='\n')" > /wheels/requirements.txt

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# The versions the project is tested with (the shared test environment's pip freeze).
ARG TENSORFLOW_VERSION=2.21.0
ARG KERAS_VERSION=3.15.1
ARG NUMPY_VERSION=2.4.6
ARG PROTOBUF_VERSION=7.36.2
ARG GRPCIO_VERSION=1.85.4
ARG GRPCIO_HEALTH_VERSION=1.85.1

LABEL org.opencontainers.image.title="mlc" \
      org.opencontainers.image.description="mlc and mlc-model-server (TensorFlow Serving compatible) on tensorflow-cpu"

# HOME, TMPDIR, KERAS_HOME and MLC_HOME point into /tmp: with the root file system read-only,
# /tmp (an emptyDir in the rendered manifests; `--read-only --tmpfs /tmp` for docker run) and
# /models are the only places written. No .pyc files are written at run time: pip compiled them.
ENV VIRTUAL_ENV=/opt/mlc \
    PATH=/opt/mlc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    KERAS_HOME=/tmp/.keras \
    MLC_HOME=/tmp/mlc \
    MLC_HEALTH_MODEL=model \
    MLC_HEALTH_PORT=8501

COPY --from=build /wheels /tmp/wheels
# tensorflow-cpu, not tensorflow: the same TensorFlow (one `tensorflow` import package) without
# the GPU kernels, 1.3 GB installed instead of 1.9 GB. pip knows it only as another distribution, so
# mlc's and tensorflow-serving-api's `tensorflow` requirement is not met by name: both go in
# with --no-deps after every other dependency is installed with the pins above. (A constraint
# cannot rename a requirement, and installing `tensorflow` too would put a second copy of the
# package over the first.) `pip check` therefore reports only that requirement, of those two.
RUN python -m venv /opt/mlc \
 && pip install --no-cache-dir \
      "tensorflow-cpu==${TENSORFLOW_VERSION}" "keras==${KERAS_VERSION}" "numpy==${NUMPY_VERSION}" \
      "protobuf==${PROTOBUF_VERSION}" "grpcio==${GRPCIO_VERSION}" "grpcio-health-checking==${GRPCIO_HEALTH_VERSION}" \
      -r /tmp/wheels/requirements.txt \
 && pip install --no-cache-dir --no-deps "tensorflow-serving-api==${TENSORFLOW_VERSION}" /tmp/wheels/mlc-*.whl \
 && rm -rf /tmp/wheels \
 && groupadd --system --gid 10001 mlc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin mlc \
 && mkdir -p /models \
 && chown 10001:10001 /models

# A numeric user, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
USER 10001:10001
WORKDIR /models
VOLUME ["/models"]
EXPOSE 8500 8501

# TF Serving's health check: the REST model status of MLC_HEALTH_MODEL has a version AVAILABLE.
# (Kubernetes ignores HEALTHCHECK; the rendered manifests carry the same check as a readinessProbe.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import json, os, sys, urllib.request as r; port, m = os.environ['MLC_HEALTH_PORT'], os.environ['MLC_HEALTH_MODEL']; s = json.load(r.urlopen(f'http://127.0.0.1:{port}/v1/models/{m}', timeout=4)); sys.exit(0 if any(v['state'] == 'AVAILABLE' for v in s['model_version_status']) else 1)"]

# Like the tensorflow/serving image: the model `model` from /models/model, gRPC on 8500, REST on
# 8501, on every interface (a container's own network namespace). A command given to `docker run`
# (`mlc sync ...`, or mlc-model-server with other flags) replaces this one whole.
CMD ["mlc-model-server", "--port=8500", "--rest_api_port=8501", "--mlc_bind_address=0.0.0.0", "--model_name=model", "--model_base_path=/models/model"]
