"""``mlc k8s render``: Kubernetes manifests for a fleet of replicas of one model, built as data.

What it describes:

- a **Deployment** of N pods; each runs the model server (``tensorflow/serving`` or
  ``mlc-model-server``) reading ``/models/models.config`` from an ``emptyDir``, polling it for
  changes. An init container (``mlc sync --to /models``, one pass: the storage initializer)
  fills the folder before the server starts, and a sidecar (``mlc sync --to /models --follow``)
  keeps it at the repository's recorded state: complete versions first, then models.config,
  whose labels come only once the server (``--server 127.0.0.1:8501``) reports their versions
  AVAILABLE (the init pass writes none), so the server never starts on or reads a label it
  would refuse (TF Serving #1608).
- a **readiness probe** on TF Serving's REST model status, ``GET /v1/models/<model>``;
- a **headless Service** (``clusterIP: None``, not-ready pods published) that mlc discovers the
  replicas by: ``dns: <model>-replicas.<namespace>.svc.cluster.local:8500`` in configs/servers.yaml;
- a **ClusterIP Service** for clients (gRPC 8500, REST 8501);
- the S3 credentials from a **Secret** (``envFrom``), never inline;
- a **locked-down pod**: every container runs as a non-root uid (``runAsNonRoot``, the mlc
  image's uid 10001) on a read-only root file system, without privilege escalation or
  capabilities, and writes only to ``/models`` and a ``/tmp`` emptyDir (``HOME``, ``MLC_HOME``
  and the server's caches live there); each container requests the CPU and memory it needs.

The mlc image is the Dockerfile at the repository root, tagged ``mlc:<version>`` of the mlc that
renders (docs/container.md): the manifests and the image come from the same release.

Manifests are plain dicts, dumped as one YAML stream; the tests validate them against the
Kubernetes schemas (kubernetes-validate). No cluster is exercised here.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any

from lifecycle import __version__
from lifecycle.errors import UsageError

GRPC_PORT = 8500
REST_PORT = 8501
MODELS_DIR = "/models"
TMP_DIR = "/tmp"
MLC_HOME = f"{TMP_DIR}/mlc"
TFSERVING_IMAGE = "tensorflow/serving:2.18.0"
MLC_IMAGE = f"mlc:{__version__}"  # the Dockerfile's image, built and tagged for this release
# The mlc image's user (Dockerfile: USER 10001:10001); given here too, since tensorflow/serving
# runs as root unless told otherwise, and runAsNonRoot needs a uid it can check.
RUN_AS = 10001
# Requests: what a replica needs to be scheduled. The server's depend on its models, so these are
# a floor for small ones (TensorFlow alone takes about 500 MiB); edit them for big networks.
SERVER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}}
SYNC_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}}


class ServerEngine(StrEnum):
    """Which model server the pods run."""

    tfserving = "tfserving"  # tensorflow_model_server from the tensorflow/serving image
    embedded = "embedded"  # mlc-model-server from the mlc image


ENGINES = tuple(e.value for e in ServerEngine)


def render(
    model: str,
    replicas: int,
    repository: str,
    image: str | None = None,
    engine: str = "tfserving",
    mlc_image: str = MLC_IMAGE,
    namespace: str = "default",
    secret: str = "mlc-s3",
    poll_seconds: int = 2,
) -> list[dict[str, Any]]:
    """The manifests (Deployment, headless and ClusterIP Services) for ``replicas`` pods of ``model``."""
    if replicas < 1:
        raise UsageError(f"--replicas must be at least 1, got {replicas}")
    if not repository.startswith("s3://") or len(repository) <= len("s3://"):
        raise UsageError(
            f"--repository must be an s3://bucket/prefix the pods can reach, got {repository!r} "
            "(a local model_repo/ is not reachable from a cluster)"
        )
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    name = f"{model}-serving"
    labels = {"app.kubernetes.io/name": "mlc-serving", "app.kubernetes.io/instance": model}
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return [
        _deployment(model, name, meta, labels, replicas, repository, image, engine, mlc_image, secret, poll_seconds),
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {**meta, "name": f"{model}-replicas"},
            "spec": {
                "clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels,
                "ports": _ports(),
            },
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {**meta, "name": model},
            "spec": {"type": "ClusterIP", "selector": labels, "ports": _ports()},
        },
    ]


def _ports() -> list[dict[str, Any]]:
    return [
        {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
        {"name": "rest", "port": REST_PORT, "targetPort": "rest", "protocol": "TCP"},
    ]


def _deployment(
    model: str, name: str, meta: dict[str, Any], labels: dict[str, str], replicas: int, repository: str,
    image: str | None, engine: str, mlc_image: str, secret: str, poll_seconds: int,
) -> dict[str, Any]:
    config = f"{MODELS_DIR}/models.config"
    flags = [
        f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}", f"--model_config_file={config}",
        f"--model_config_file_poll_wait_seconds={poll_seconds}",
    ]
    if engine == "embedded":
        server = {"image": image or mlc_image, "command": ["mlc-model-server"], "args": [*flags, "--mlc_bind_address=0.0.0.0"]}
    else:
        server = {"image": image or TFSERVING_IMAGE, "command": ["tensorflow_model_server"], "args": flags}
    volume = {"name": "models", "mountPath": MODELS_DIR}
    tmp = {"name": "tmp", "mountPath": TMP_DIR}
    sync_env = [
        {"name": "MLC_REPOSITORY", "value": repository},
        {"name": "MLC_HOME", "value": MLC_HOME},
    ]

    def sync(*extra: str) -> dict[str, Any]:
        return {
            "image": mlc_image, "command": ["mlc"], "args": ["sync", "--to", MODELS_DIR, *extra],
            "env": sync_env, "envFrom": [{"secretRef": {"name": secret}}], "volumeMounts": [volume, tmp],
            "resources": copy.deepcopy(SYNC_RESOURCES), "securityContext": _locked_down(),
        }

    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "initContainers": [{"name": "sync-once", **sync()}],
                    "containers": [
                        {
                            "name": "server", **server,
                            "ports": [
                                {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                                {"name": "rest", "containerPort": REST_PORT, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": f"/v1/models/{model}", "port": "rest"},
                                "periodSeconds": 5, "failureThreshold": 3,
                            },
                            "volumeMounts": [{**volume, "readOnly": True}, tmp],
                            "resources": copy.deepcopy(SERVER_RESOURCES),
                            "securityContext": _locked_down(),
                        },
                        {"name": "sync", **sync("--follow", "--server", f"127.0.0.1:{REST_PORT}")},
                    ],
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumes": [{"name": "models", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _locked_down() -> dict[str, Any]:
    """A container's securityContext: read-only root, no privilege escalation, no capabilities."""
    return {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """One YAML stream, documents separated by ``---``, keys in the order built."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # shared label dicts print in full, not as &anchors
            return True

    return yaml.dump_all(manifests, Dumper=Dumper, sort_keys=False)
