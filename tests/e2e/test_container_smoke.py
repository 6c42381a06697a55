"""The Dockerfile's image, built and run: mlc-model-server in it answers one Predict on loopback.

Opt-in (``MLC_CONTAINER_SMOKE=1``): the build installs TensorFlow into a new image (minutes,
about 2 GB). It needs podman and the base image in podman's local storage; the build never
pulls (``--pull=never``), since only package registries are reachable from the test machines.
Without any of these it skips and says which is missing. The container runs as the image's own
non-root user, on a read-only root file system (``--read-only``: only /tmp is a tmpfs), with the
model mounted read-only at /models, on the host's network so that it binds 127.0.0.1 only.

Settings (environment), for machines where podman needs help; docs/container.md has the values
that made it run on the development machine:

- ``MLC_CONTAINER_BASE``: the base image (default ``python:3.11-slim-bookworm``).
- ``MLC_CONTAINER_IMAGE``: an image already built from this Dockerfile, to run without building.
- ``MLC_PODMAN_ARGS``: podman's global options (``--runtime runc``).
- ``MLC_CONTAINER_BUILD_ARGS`` / ``MLC_CONTAINER_RUN_ARGS``: extra ``podman build`` / ``podman run``
  options (a package mirror mounted into the build, ulimits).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support.homes import REPO_ROOT
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.savedmodels import build_half_plus_two_tf2

pytestmark = pytest.mark.e2e

BASE = os.environ.get("MLC_CONTAINER_BASE", "python:3.11-slim-bookworm")
TAG = "localhost/mlc:smoke-test"
MODEL = "half"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run podman with the global options from MLC_PODMAN_ARGS."""
    argv = ["podman", *shlex.split(os.environ.get("MLC_PODMAN_ARGS", "")), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def image() -> str:
    """The image: MLC_CONTAINER_IMAGE, or built here from the Dockerfile on MLC_CONTAINER_BASE."""
    if os.environ.get("MLC_CONTAINER_SMOKE") != "1":
        pytest.skip("opt-in: set MLC_CONTAINER_SMOKE=1 to build the image (TensorFlow, minutes) and run it")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (Debian: apt-get install podman)")
    given = os.environ.get("MLC_CONTAINER_IMAGE")
    if given:
        return given
    if podman("image", "exists", BASE, check=False).returncode != 0:
        pytest.skip(f"base image {BASE} is not in podman's local storage and cannot be pulled here "
                    "(no container registry is reachable); load one, or set MLC_CONTAINER_BASE")
    podman("build", "--pull=never", "--format", "docker", "--build-arg", f"PYTHON_IMAGE={BASE}", "-t", TAG,
           *shlex.split(os.environ.get("MLC_CONTAINER_BUILD_ARGS", "")), str(REPO_ROOT), timeout=2400)
    return TAG


def model_status(rest_port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}", timeout=5) as answer:
        return json.load(answer)["model_version_status"]


@pytest.mark.timeout(3000)
def test_the_image_serves_a_predict(image: str, tmp_path: Path) -> None:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    models = tmp_path / "models"
    build_half_plus_two_tf2(models / MODEL / "1")
    for path in [models, *models.rglob("*")]:  # readable by the image's uid 10001
        path.chmod(0o755 if path.is_dir() else 0o644)
    grpc_port, rest_port = free_ports(2)
    name = f"mlc-smoke-{os.getpid()}"
    podman(
        "run", "-d", "--rm", "--name", name, "--network=host", "--read-only",
        "-e", f"MLC_HEALTH_MODEL={MODEL}", "-e", f"MLC_HEALTH_PORT={rest_port}",
        "-v", f"{models}:/models:ro", *shlex.split(os.environ.get("MLC_CONTAINER_RUN_ARGS", "")), image,
        "mlc-model-server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
        f"--model_name={MODEL}", f"--model_base_path=/models/{MODEL}",
    )
    try:
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        wait_until(lambda: any(v["state"] == "AVAILABLE" for v in model_status(rest_port)), timeout=300,
                   what=f"{MODEL} version 1 AVAILABLE in the container", interval=0.5, ignore=(OSError,),
                   details=lambda: podman("logs", name, check=False).stderr[-3000:])
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0], [2.0]], np.float32)))
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [[2.5], [3.0]])
        assert reply.model_spec.version.value == 1
        # the image's HEALTHCHECK (TF Serving's REST model status) says healthy
        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        # nothing was written outside /tmp: the root file system is read-only and /models is mounted so
        assert podman("exec", name, "sh", "-c", "touch /opt/mlc/x 2>/dev/null || echo read-only").stdout.strip() == "read-only"
    finally:
        podman("stop", "-t", "5", name, check=False)
