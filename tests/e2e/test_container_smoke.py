"""The Dockerfile's image, built and run: mlc-model-server in it answers a Predict on loopback.

Two tests: the image's server alone, on a model mounted at /models; and the pod `mlc k8s render
--engine embedded` describes, container by container from the rendered manifest (init
`mlc sync`, server, `mlc sync --follow` sidecar), fed from SeaweedFS's S3 on 127.0.0.1.

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
import yaml
from typer.testing import CliRunner

from lifecycle.cli import app
from tests.support.homes import REPO_ROOT
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.rollout_support import build_versions, make_home
from tests.support.savedmodels import build_half_plus_two_tf2
from tests.support.seaweed import Seaweed

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("MLC_CONTAINER_SMOKE") != "1",
                       reason="opt-in: set MLC_CONTAINER_SMOKE=1 to build the image (TensorFlow, minutes) and run it"),
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (Debian: apt-get install podman)"),
]

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
    given = os.environ.get("MLC_CONTAINER_IMAGE")
    if given:
        return given
    if podman("image", "exists", BASE, check=False).returncode != 0:
        pytest.skip(f"base image {BASE} is not in podman's local storage and cannot be pulled here "
                    "(no container registry is reachable); load one, or set MLC_CONTAINER_BASE")
    podman("build", "--pull=never", "--format", "docker", "--build-arg", f"PYTHON_IMAGE={BASE}", "-t", TAG,
           *shlex.split(os.environ.get("MLC_CONTAINER_BUILD_ARGS", "")), str(REPO_ROOT), timeout=2400)
    return TAG


def model_status(rest_port: int, model: str = MODEL) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{model}", timeout=5) as answer:
        return json.load(answer)["model_version_status"]


def predict(grpc_port: int, model: str, label: str = "") -> tuple[np.ndarray, int]:
    """One gRPC Predict of x = [[1], [2]]: the output y and the version that answered."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        if label:
            request.model_spec.version_label = label
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0], [2.0]], np.float32)))
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return tf.make_ndarray(reply.outputs["y"]), reply.model_spec.version.value


@pytest.mark.timeout(3000)
def test_the_image_serves_a_predict(image: str, tmp_path: Path) -> None:
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
        y, version = predict(grpc_port, MODEL)
        np.testing.assert_allclose(y, [[2.5], [3.0]])
        assert version == 1
        # the image's HEALTHCHECK (TF Serving's REST model status) says healthy
        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        # nothing was written outside /tmp: the root file system is read-only and /models is mounted so
        assert podman("exec", name, "sh", "-c", "touch /opt/mlc/x 2>/dev/null || echo read-only").stdout.strip() == "read-only"
    finally:
        podman("stop", "-t", "5", name, check=False)


def pod_command(container: dict, ports: dict[str, str]) -> list[str]:
    """A rendered container's command line, its ports moved to free ones and bound to loopback."""
    argv = [*container["command"], *container.get("args", [])]
    return [ports.get(a, a) for a in argv]


@pytest.mark.timeout(3000)
def test_the_rendered_pod_runs_in_the_image(image: str, tmp_path: Path, seaweed: Seaweed, s3_bucket: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    repository = f"s3://{s3_bucket}/shared"
    secret = seaweed.env()  # what the Secret `mlc-s3` holds in a cluster
    for key, value in {**secret, "MLC_REPOSITORY": repository}.items():
        monkeypatch.setenv(key, value)
    make_home(tmp_path / "trainer", build_versions(tmp_path / "built", [1]), [1], stable=1)
    rendered = CliRunner().invoke(app, ["k8s", "render", "hpt", "--repository", repository, "--engine", "embedded", "--image", image])
    assert rendered.exit_code == 0, rendered.output
    pod = next(yaml.safe_load_all(rendered.stdout))["spec"]["template"]["spec"]
    (init,), (server, sidecar) = pod["initContainers"], pod["containers"]
    assert {c["image"] for c in (init, server, sidecar)} == {image}

    volumes = {"models": tmp_path / "models", "tmp": tmp_path / "tmp"}
    for folder in volumes.values():  # emptyDirs, writable by the pod's uid 10001
        folder.mkdir()
        folder.chmod(0o1777)
    grpc_port, rest_port = free_ports(2)
    ports = {"--port=8500": f"--port={grpc_port}", "--rest_api_port=8501": f"--rest_api_port={rest_port}",
             "--mlc_bind_address=0.0.0.0": "--mlc_bind_address=127.0.0.1", "127.0.0.1:8501": f"127.0.0.1:{rest_port}"}

    def run(container: dict, *detach: str) -> subprocess.CompletedProcess[str]:
        mounts = [f"-v={volumes[m['name']]}:{m['mountPath']}{':ro' if m.get('readOnly') else ''}" for m in container["volumeMounts"]]
        env = [f"-e={e['name']}={e['value']}" for e in container.get("env", [])]
        env += [f"-e={k}={v}" for k, v in secret.items()] if container.get("envFrom") else []
        return podman("run", *detach, "--name", f"mlc-pod-{os.getpid()}-{container['name']}", "--rm", "--network=host",
                      "--read-only", *mounts, *env, *shlex.split(os.environ.get("MLC_CONTAINER_RUN_ARGS", "")),
                      image, *pod_command(container, ports), timeout=600)

    run(init)  # the storage initializer: one pass, versions then models.config (no labels yet)
    assert (volumes["models"] / "hpt" / "1" / "saved_model.pb").exists() and (volumes["models"] / "models.config").exists()
    names = [f"mlc-pod-{os.getpid()}-{c['name']}" for c in (server, sidecar)]
    try:
        run(server, "-d")
        run(sidecar, "-d")
        wait_until(lambda: any(v["state"] == "AVAILABLE" for v in model_status(rest_port, "hpt")), timeout=300,
                   what="hpt version 1 AVAILABLE in the server container", interval=0.5, ignore=(OSError,),
                   details=lambda: podman("logs", names[0], check=False).stderr[-3000:])
        import grpc

        # the sidecar adds the label once the server reports version 1 AVAILABLE
        y, version = wait_until(lambda: predict(grpc_port, "hpt", label="stable"), timeout=120, interval=0.5,
                                what="a Predict on the label stable", ignore=(grpc.RpcError,),
                                details=lambda: podman("logs", names[1], check=False).stderr[-3000:])
        np.testing.assert_allclose(y, [[1.5], [2.0]])  # version 1: y = 0.5 x + 1
        assert version == 1
    finally:
        for name in names:
            podman("stop", "-t", "5", name, check=False)
