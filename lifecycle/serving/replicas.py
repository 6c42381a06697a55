"""What one replica serves now, read over REST: AVAILABLE versions and labels per model.

``mlc reconcile`` compares it with the recorded state to know what to change, and ``mlc
status`` with the recorded generations to say which one a replica serves. Labels are read the
way TF Serving exposes them, ``GET /v1/models/<m>/labels/<label>`` per label name. This module
must not import TensorFlow or grpc.
"""

from __future__ import annotations

from collections.abc import Iterable

from lifecycle.errors import LifecycleError, ModelNotFound, ServerUnavailable
from lifecycle.serving import tfs_config
from lifecycle.serving.client import rest_model_status
from lifecycle.serving.fleet import ServerSpec
from lifecycle.serving.tfs_config import ModelServing

STATUS_TIMEOUT_S = 2.0


def observe(spec: ServerSpec, models: Iterable[str], timeout: float = STATUS_TIMEOUT_S) -> tfs_config.Serving:
    """Each model's AVAILABLE versions and labels on ``spec``; ServerUnavailable if it does not answer.

    A model the server does not know is absent from the result. Without a REST address the
    replica cannot be read (status and reconcile read over REST): ServerUnavailable.
    """
    if not spec.rest:
        raise ServerUnavailable(f"server {spec.name} has no REST address in configs/servers.yaml; it cannot be read")
    out: tfs_config.Serving = {}
    for model in models:
        try:
            states = rest_model_status(spec.rest, model, timeout, tls=spec.tls)
        except ModelNotFound:
            continue
        available = tuple(sorted(v for v, s in states.items() if s.state == "AVAILABLE"))
        out[model] = ModelServing(available, labels(spec, model, timeout))
    return out


def labels(spec: ServerSpec, model: str, timeout: float = STATUS_TIMEOUT_S) -> dict[str, int]:
    """The labels (stable, canary) set for ``model`` on ``spec`` and the versions they point at."""
    assert spec.rest  # callers check: a server without REST cannot be read
    out: dict[str, int] = {}
    for label in tfs_config.LABELS:
        try:
            labelled = rest_model_status(spec.rest, model, timeout, label=label, tls=spec.tls)
        except ServerUnavailable:
            raise
        except LifecycleError:
            continue  # the label is not set on this server
        for v, s in labelled.items():
            if s.state == "AVAILABLE":
                out[label] = v
    return out


def describe(serving: ModelServing | None) -> str:
    """``versions [1, 2] stable=1`` for people."""
    if serving is None or not serving.versions:
        return "nothing"
    labels = " ".join(f"{k}={v}" for k, v in sorted(serving.labels.items()))
    return f"versions {list(serving.versions)}" + (f" {labels}" if labels else "")


def changes(now: ModelServing | None, wanted: ModelServing | None) -> list[str]:
    """What turning ``now`` into ``wanted`` changes, for people (empty: in sync)."""
    have = set(now.versions) if now else set()
    want = set(wanted.versions) if wanted else set()
    out = []
    if want - have:
        out.append(f"loaded version(s) {sorted(want - have)}")
    if have - want:
        out.append(f"unloaded version(s) {sorted(have - want)}")
    old_labels = dict(now.labels) if now else {}
    new_labels = dict(wanted.labels) if wanted else {}
    for label in sorted(set(old_labels) | set(new_labels)):
        if old_labels.get(label) != new_labels.get(label):
            out.append(f"label {label}: {old_labels.get(label, '-')} -> {new_labels.get(label, '-')}")
    return out
