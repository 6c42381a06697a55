"""End-to-end: shadow comparison of a candidate in mlc-model-server (issue 23, deliverable 2).

Stable's default-route answers are copied to the candidate off the request path and compared by
the model's task; the results are metrics. Real SavedModels: half_plus_two versions (1 and 2
answer the same, 3 answers 0.5 * x + 3) and small segmenters (1 and 2 the same, 3 narrower).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from lifecycle.server import RunningServer, ServerOptions, create_server
from tests.support.polling import wait_until
from tests.support.savedmodels import build_half_plus_two_tf1, build_segmenter
from tests.support.server_support import Client, model_config, server_config
from tests.support.traffic_support import TOKEN, exchange, metric, scrape, set_split

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shadow")
    for version, offset in ((1, 2.0), (2, 2.0), (3, 3.0)):
        build_half_plus_two_tf1(root / "hp" / str(version), offset=offset)
    for version, width in ((1, 8), (2, 8), (3, 4)):
        build_segmenter(root / "seg" / str(version), num_classes=5, width=width)
    (root / "token").write_text(TOKEN)
    (root / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    return root


def start(root: Path) -> RunningServer:
    config = server_config(model_config("hp", root / "hp", policy="all"), model_config("seg", root / "seg", policy="all"))
    return create_server(ServerOptions(model_config=config, rest_api_port=0, file_system_poll_wait_seconds=0,
                                       monitoring_config_file=str(root / "monitoring.config"),
                                       mlc_admin_token_file=str(root / "token")))


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[RunningServer]:
    running = start(root)
    yield running
    running.stop()


def predict(client: Client, model: str, inputs: dict[str, np.ndarray], **spec: object) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if "version" in spec:
        request.model_spec.version.value = spec["version"]  # type: ignore[assignment]
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return client.predict_stub.Predict(request, timeout=10)


def shadow_counts(server: RunningServer, model: str, version: int) -> dict[str, float]:
    text = scrape(server)
    labels = {"model_name": model, "version": str(version)}
    return {name: metric(text, f":mlc:shadow_{name}", **labels)
            for name in ("requests", "dropped", "agreement_count", "agreement_sum", "mask_iou_count", "mask_iou_sum",
                         "max_abs_diff")}


def shadowed(server: RunningServer, client: Client, model: str, stable: int, candidate: int, inputs: dict[str, np.ndarray],
             n: int = 40, **compare: str) -> dict[str, float]:
    """Send n default-route requests at shadow 1.0; the shadow metrics once every copy is compared."""
    before = shadow_counts(server, model, candidate)
    set_split(server, model, {"stable": stable, "candidate": candidate, "weight": 0, "shadow": 1.0,
                              "compare": compare or {"kind": "generic"}})
    try:
        for _ in range(n):
            assert predict(client, model, inputs).model_spec.version.value == stable  # the candidate never answers
    finally:
        set_split(server, model, {})
    wait_until(lambda: shadow_counts(server, model, candidate)["agreement_count"] - before["agreement_count"]
               == shadow_counts(server, model, candidate)["requests"] - before["requests"], 30, what="the shadow to finish")
    after = shadow_counts(server, model, candidate)
    delta = {k: after[k] - before[k] for k in after}
    delta["max_abs_diff"] = after["max_abs_diff"]
    assert delta["requests"] + delta["dropped"] == n  # every stable answer was copied or counted as dropped
    return delta


def test_an_identical_candidate_agrees_fully_and_a_different_one_does_not(server: RunningServer) -> None:
    client = Client(server.grpc_address)
    x = {"x": np.array([[1.0], [4.0]], np.float32)}
    try:
        same = shadowed(server, client, "hp", 1, 2, x)
        assert same["requests"] > 0 and same["agreement_sum"] == same["agreement_count"]  # agreement 1.0
        assert same["max_abs_diff"] == 0
        # REST's :predict is shadowed the same way.
        before = shadow_counts(server, "hp", 2)
        set_split(server, "hp", {"stable": 1, "candidate": 2, "shadow": 1.0})
        for _ in range(5):
            status, _, body = exchange(server, "POST", "/v1/models/hp:predict", b'{"instances": [[1.0]]}')
            assert status == 200 and json.loads(body) == {"predictions": [[2.5]]}
        set_split(server, "hp", {})
        after = shadow_counts(server, "hp", 2)
        assert after["requests"] + after["dropped"] - before["requests"] - before["dropped"] == 5
        other = shadowed(server, client, "hp", 1, 3, x)
        assert other["agreement_count"] > 0 and other["agreement_sum"] / other["agreement_count"] < 1
        assert other["max_abs_diff"] == 1.0  # 0.5 * x + 3 against 0.5 * x + 2
    finally:
        client.close()


def test_segmentation_is_compared_by_pixel_agreement_and_mask_iou(server: RunningServer) -> None:
    client = Client(server.grpc_address)
    images = {"images": np.random.default_rng(1).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)}
    try:
        same = shadowed(server, client, "seg", 1, 2, images, n=10, kind="segmentation", output="classes")
        assert same["agreement_sum"] == same["agreement_count"] > 0 and same["mask_iou_sum"] == same["mask_iou_count"]
        other = shadowed(server, client, "seg", 1, 3, images, n=10, kind="segmentation", output="logits")
        mean = other["agreement_sum"] / other["agreement_count"]
        assert 0 <= mean < 1 and other["mask_iou_sum"] / other["mask_iou_count"] < 1
    finally:
        client.close()


def test_a_slow_candidate_never_slows_stable_and_a_full_queue_counts_drops(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each shadow copy takes 2 s on the candidate; no stable answer waits for one.

    The sleep is long so that a loaded machine's slow answers cannot pass for waiting."""
    running = start(root)
    client = Client(running.grpc_address)
    x = {"x": np.array([[1.0]], np.float32)}
    try:
        monkeypatch.setenv("MLC_FAILPOINTS", "server:predict:hp:2=sleep:2")
        set_split(running, "hp", {"stable": 1, "candidate": 2, "weight": 0, "shadow": 1.0})
        latencies = []
        for _ in range(150):
            started = time.perf_counter()
            assert predict(client, "hp", x).model_spec.version.value == 1
            latencies.append(time.perf_counter() - started)
        assert max(latencies) < 2.0  # a request that waited for its copy would take at least the sleep
        counts = shadow_counts(running, "hp", 2)
        assert counts["requests"] + counts["dropped"] == 150
        assert counts["dropped"] >= 150 - 64 - 5  # the queue holds 64; the worker took a few at most
        assert predict(client, "hp", x, version=2).model_spec.version.value == 2  # named: no shadow, just slow
    finally:
        client.close()
        running.stop()
