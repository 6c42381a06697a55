"""Helpers for the rollout tests: mlc homes of real half_plus_two versions, servers, client load.

A version ``v`` of model ``hpt`` computes ``y = 0.5 * x + v``, so an answer tells which version
produced it. Each version carries warmup records (one PredictRequest) and a golden digest of
its output in the registry, exactly as ``mlc register`` records them for DeepLab.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lifecycle.serving import tfs_config
from lifecycle.serving.warmup import output_digest
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, VersionRecord

MODEL = "hpt"
WARMUP_X = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)


def warmup_request(model: str = MODEL):  # noqa: ANN201 - a PredictRequest
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(WARMUP_X))
    return request


def write_warmup(version_dir: Path, model: str = MODEL) -> None:
    """assets.extra/tf_serving_warmup_requests with one PredictionLog."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    extra = version_dir / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(warmup_request(model))
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())


def golden(version: int) -> str:
    return output_digest((np.float32(0.5) * WARMUP_X + np.float32(version)).astype(np.float32))


def build_versions(root: Path, versions: list[int]) -> Path:
    """Build half_plus_two versions (with warmup) under root/<v>; returns root."""
    from tests.support.savedmodels import build_half_plus_two_tf1

    for v in versions:
        build_half_plus_two_tf1(root / str(v), offset=float(v))
        write_warmup(root / str(v))
    return root


def make_home(home: Path, built: Path, versions: list[int], stable: int | None = None) -> Paths:
    """An mlc home whose model hpt has ``versions`` (copied from ``built``), validated."""
    paths = Paths(home.resolve())
    paths.configs.mkdir(parents=True, exist_ok=True)
    (paths.configs / f"{MODEL}.yaml").write_text(
        f"name: {MODEL}\nnetwork: {{}}\n"
        "signature: {key: serving_default, inputs: {x: {dtype: float32, shape: [-1, 1]}}, "
        "outputs: {y: {dtype: float32, shape: [-1, 1]}}}\n"
    )
    with registry.transaction(paths) as reg:
        rec = reg.model(MODEL, create=True)
        store = paths.store  # published through the store: a local folder or an s3:// prefix
        for v in versions:
            assert store.claim_version(MODEL, v, "tests")
            staged = store.staging_dir(MODEL) / f".staging-test-{v}"
            shutil.copytree(built / str(v), staged)
            store.publish_version(MODEL, v, staged)
            rec.versions.append(
                VersionRecord(v, f"digest{v}", f"ckpt/run/ckpt-{v}", v * 100, True,
                              {"golden": {"digest": golden(v), "output": "y"}})
            )
        if stable is not None:
            rec.stable = stable
            rec.history.append(HistoryEvent("promote", None, stable, "ok", reason="initial"))
        tfs_config.write(paths, tfs_config.build(paths, tfs_config.served_from_registry(reg)))
    return paths


def start_server(paths: Paths, poll_seconds: float = 0):  # noqa: ANN201 - a RunningServer
    """An in-process mlc-model-server on 127.0.0.1:0 (gRPC and REST) on configs/models.config.

    Like ``mlc serve`` it starts on the versions alone and then takes the labels by a reload:
    labels may point only at AVAILABLE versions.
    """
    from lifecycle.server import ServerOptions, create_server
    from lifecycle.serving.client import ServingClient

    labelled = tfs_config.read(paths) or {}
    unlabelled = tfs_config.build(paths, {m: tfs_config.ModelServing(s.versions, {}) for m, s in labelled.items()})
    server = create_server(
        ServerOptions(
            grpc_port=0, rest_api_port=0, model_config=unlabelled,
            model_config_file=str(paths.serving_config) if poll_seconds else None,
            model_config_file_poll_wait_seconds=poll_seconds, max_num_load_retries=0,
        )
    )
    with ServingClient(server.grpc_address) as client:
        client.reload(tfs_config.build(paths, labelled))
    return server


@dataclass
class Load:
    """Client threads sending label-addressed Predicts, checking who answered and what.

    By default it sends hpt's warmup request and checks that the output was computed by the
    version that says it answered. Give ``request`` and ``digests`` (version -> golden digest of
    output ``output``) for any other model: every answer must match its version's golden digest.
    """

    address: str
    label: str = "stable"
    threads: int = 2
    pause: float = 0.0
    allowed: set[int] = field(default_factory=set)
    request: Any = None
    digests: dict[int, str] = field(default_factory=dict)
    output: str = "y"
    failures: list[str] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.allowed = set(self.allowed)

    def allow(self, versions: set[int]) -> None:
        with self._lock:
            self.allowed = set(versions)

    def _check(self, version: int, response: Any) -> str | None:
        import tensorflow as tf

        y = tf.make_ndarray(response.outputs[self.output])
        if self.digests:
            if output_digest(y) != self.digests.get(version):
                return f"version {version} answered with a digest that is not its golden one"
            return None
        implied = int(round(float(y[0][0]) - 0.5))
        return None if implied == version else f"answered by {version} but the output says {implied}"

    def _run(self) -> None:
        from lifecycle.errors import LifecycleError
        from lifecycle.serving.client import ServingClient

        request = type(self.request)() if self.request is not None else warmup_request()
        if self.request is not None:
            request.CopyFrom(self.request)
        request.model_spec.ClearField("version")
        request.model_spec.version_label = self.label
        with ServingClient(self.address, timeout=30.0) as client:
            while not self._stop.wait(self.pause):
                with self._lock:
                    before = set(self.allowed)
                try:
                    response = client.predict(request)
                except LifecycleError as e:
                    self.failures.append(e.message)
                    continue
                with self._lock:
                    after = set(self.allowed)
                version = response.model_spec.version.value
                problem = self._check(version, response)
                with self._lock:
                    self.answers[version] = self.answers.get(version, 0) + 1
                    if problem or version not in (before | after):
                        self.wrong.append(f"{problem or 'answered by ' + str(version)}; allowed {before | after}")

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def total(self) -> int:
        return sum(self.answers.values())
