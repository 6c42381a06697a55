"""End-to-end: mlc-model-server's traffic split, its admin path and per-version metrics (issue 23).

Real servers on 127.0.0.1, real half_plus_two SavedModels (version N answers 0.5 * x + N),
TF Serving's official stubs as clients. Shadow comparison: tests/e2e/test_server_shadow.py.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from lifecycle.errors import StartupError
from lifecycle.server import RunningServer, ServerOptions, create_server
from tests.support.ports import free_ports
from tests.support.server_support import Client, add_version, model_config, server_config
from tests.support.traffic_support import TOKEN, TRAFFIC, exchange, metric, scrape, set_split

pytestmark = pytest.mark.e2e

def predict_request(model: str, version: int | None = None, label: str | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    return request


def answered_by(client: Client, model: str, key: str | None = None, **spec: object) -> int:
    metadata = [("mlc-route-key", key)] if key is not None else None
    response = client.predict_stub.Predict(predict_request(model, **spec), timeout=10, metadata=metadata)  # type: ignore[arg-type]
    assert tf.make_ndarray(response.outputs["y"])[0][0] == 0.5 + response.model_spec.version.value
    return response.model_spec.version.value


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("traffic")
    for version in (1, 2):
        add_version(root / "hp", version)
    (root / "token").write_text(TOKEN + "\n")
    (root / "monitoring.config").write_text('prometheus_config { enable: true }\n')
    return root


def options(root: Path, **changes: object) -> ServerOptions:
    config = server_config(model_config("hp", root / "hp", policy="all", labels={"stable": 1, "canary": 2}))
    base = dict(model_config=config, rest_api_port=0, file_system_poll_wait_seconds=0,
                allow_version_labels_for_unavailable_models=True, monitoring_config_file=str(root / "monitoring.config"),
                mlc_admin_token_file=str(root / "token"))
    base.update(changes)
    return ServerOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[RunningServer]:
    running = create_server(options(root))
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    c = Client(server.grpc_address)
    yield c
    set_split(server, "hp", {})
    c.close()


def test_weight_splits_sticky_keys_and_raising_it_moves_keys_one_way(server: RunningServer, client: Client) -> None:
    assert answered_by(client, "hp") == 2  # no split: the highest version, as TF Serving
    answer = set_split(server, "hp", {"stable": 1, "candidate": 2, "weight": 0.1, "shadow": 0})
    assert answer["split"]["weight"] == 0.1 and answer["model"] == "hp"  # type: ignore[index]
    keys = [f"user-{i}" for i in range(1000)]
    first = {k: answered_by(client, "hp", k) for k in keys}
    again = {k: answered_by(client, "hp", k) for k in keys}
    assert first == again  # 2,000 keyed requests: every key sticks to one version
    share = sum(v == 2 for v in [*first.values(), *again.values()]) / 2000
    assert 0.07 <= share <= 0.13
    unkeyed = [answered_by(client, "hp") for _ in range(2000)]
    assert set(unkeyed) == {1, 2} and 0.07 <= unkeyed.count(2) / 2000 <= 0.13
    # REST: the same header, the same choice; the answer is TF Serving's JSON, unchanged.
    for key in keys[:20]:
        status, _, body = exchange(server, "POST", "/v1/models/hp:predict", b'{"instances": [[1.0]]}', {"mlc-route-key": key})
        assert status == 200 and json.loads(body) == {"predictions": [[0.5 + first[key]]]}
    set_split(server, "hp", {"stable": 1, "candidate": 2, "weight": 0.5, "shadow": 0})
    raised = {k: answered_by(client, "hp", k) for k in keys}
    assert all(raised[k] == 2 for k in keys if first[k] == 2)  # no key goes back to stable
    assert 0.4 <= sum(v == 2 for v in raised.values()) / 1000 <= 0.6


def test_versioned_and_labelled_requests_are_never_split_and_answer_byte_for_byte(
        server: RunningServer, client: Client) -> None:
    def grpc_bytes(**spec: object) -> bytes:
        return client.predict_stub.Predict(predict_request("hp", **spec), timeout=10).SerializeToString()

    before = {spec: grpc_bytes(**dict([spec])) for spec in (("version", 1), ("version", 2), ("label", "stable"), ("label", "canary"))}
    rest_before = exchange(server, "POST", "/v1/models/hp/labels/stable:predict", b'{"instances": [[1.0]]}')
    set_split(server, "hp", {"stable": 1, "candidate": 2, "weight": 0.5, "shadow": 1.0})
    for _ in range(20):
        for spec, expected in before.items():
            assert grpc_bytes(**dict([spec])) == expected
        assert exchange(server, "POST", "/v1/models/hp/labels/stable:predict", b'{"instances": [[1.0]]}') == rest_before
    text = scrape(server)
    assert metric(text, ":mlc:shadow_requests", model_name="hp", version="2") == 0  # nothing named was shadowed


def test_a_split_whose_versions_are_not_available_changes_nothing(server: RunningServer, client: Client) -> None:
    set_split(server, "hp", {"stable": 1, "candidate": 7, "weight": 1.0})
    assert {answered_by(client, "hp", f"k{i}") for i in range(50)} == {2}  # highest available, as without a split


def test_the_admin_path_answers_only_with_the_token(server: RunningServer, root: Path) -> None:
    body = json.dumps({"stable": 1, "candidate": 2, "weight": 0.3}).encode()
    plain = create_server(options(root, mlc_admin_token_file=""))
    try:
        for method, payload in (("PUT", body), ("GET", None)):
            unknown = exchange(plain, method, TRAFFIC + "hp", payload)
            assert unknown[0] == 400 and b"Malformed request" in unknown[1:][1]
            # The same path on a server with a token: no header, a wrong one, an empty one.
            for headers in ({}, {"mlc-admin-token": "wrong"}, {"mlc-admin-token": ""}, {"mlc-admin-token": TOKEN + "x"}):
                assert exchange(server, method, TRAFFIC + "hp", payload, headers) == unknown
            assert exchange(plain, method, TRAFFIC + "hp", payload, {"mlc-admin-token": TOKEN}) == unknown
    finally:
        plain.stop()
    assert exchange(server, "GET", TRAFFIC + "hp", None, {"mlc-admin-token": TOKEN})[2] != b""
    put = set_split(server, "hp", {"stable": 1, "candidate": 2, "weight": 0.3})
    status, _, got = exchange(server, "GET", TRAFFIC + "hp", None, {"mlc-admin-token": TOKEN})
    assert status == 200 and json.loads(got) == put
    assert put["split"] == {"stable": 1, "candidate": 2, "weight": 0.3, "shadow": 0.0,
                            "compare": {"kind": "generic", "output": "", "signature": ""}}
    cleared = set_split(server, "hp", {"stable": 1, "candidate": 2, "weight": 0, "shadow": 0})
    assert cleared["split"] is None and cleared["generation"] == put["generation"] + 1  # type: ignore[operator]
    for bad, message in ((b'{"stable": 1, "candidate": 2, "weight": 1.5}', "'weight' must be a number from 0 to 1"),
                         (b'{"stable": 1, "candidate": 1, "weight": 0.5}', "stable and candidate are both version 1"),
                         (b'{"stable": 1, "candidate": 2, "wieght": 0.5}', "unknown key 'wieght'"),
                         (b'[1]', "Is not object")):
        status, _, answer = exchange(server, "PUT", TRAFFIC + "hp", bad, {"mlc-admin-token": TOKEN})
        assert status == 400 and message in json.loads(answer)["error"]
    status, _, answer = exchange(server, "PUT", TRAFFIC + "nope", body, {"mlc-admin-token": TOKEN})
    assert status == 404 and json.loads(answer) == {"error": "Model nope is not in this server's config"}


def test_per_version_request_counts_codes_and_latency_on_the_monitoring_endpoint(
        server: RunningServer, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    before = scrape(server)
    set_split(server, "hp", {"stable": 1, "candidate": 2, "weight": 0.5})
    monkeypatch.setenv("MLC_FAILPOINTS", "server:predict:hp:2=error:1.0")  # the candidate fails every answer
    codes = []
    for i in range(200):
        try:
            codes.append((answered_by(client, "hp", f"m{i}"), "OK"))
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE and "failpoint server:predict:hp:2" in (e.details() or "")
            codes.append((2, "UNAVAILABLE"))
    monkeypatch.delenv("MLC_FAILPOINTS")
    assert {c for _, c in codes} == {"OK", "UNAVAILABLE"} and all(v == 1 for v, c in codes if c == "OK")
    text = scrape(server)
    assert "# TYPE :mlc:request_count counter" in text and "# TYPE :mlc:request_latency histogram" in text
    for version, code in ((1, "OK"), (2, "UNAVAILABLE")):
        delta = (metric(text, ":mlc:request_count", model_name="hp", version=str(version), code=code)
                 - metric(before, ":mlc:request_count", model_name="hp", version=str(version), code=code))
        assert delta == sum(1 for v, c in codes if (v, c) == (version, code))
    count = metric(text, ":mlc:request_latency_count", model_name="hp", version="1")
    assert count >= sum(1 for v, _ in codes if v == 1)
    assert metric(text, ":mlc:request_latency_bucket", model_name="hp", version="1", le="+Inf") == count
    assert 0 < metric(text, ":mlc:request_latency_sum", model_name="hp", version="1") < count  # seconds: under 1 s each
    assert metric(text, ":mlc:request_latency_bucket", model_name="hp", version="1", le="0.00125") > 0 or \
        metric(text, ":mlc:request_latency_bucket", model_name="hp", version="1", le="0.1") > 0


def test_a_traffic_file_that_is_not_a_split_refuses_to_start(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "traffic.json"
    bad.write_text('{"hp": {"stable": 1, "candidate": 2, "weight": 2}}')
    with pytest.raises(StartupError, match=r"INVALID_ARGUMENT: --mlc_traffic_file=.*'weight' must be a number from 0 to 1"):
        create_server(options(root, mlc_traffic_file=str(bad)))
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    with pytest.raises(StartupError, match="the file is empty"):
        create_server(options(root, mlc_admin_token_file=str(empty)))


def test_a_restarted_server_splits_before_its_ports_answer(root: Path, tmp_path: Path) -> None:
    """mlc-model-server with --mlc_traffic_file: its very first answer already follows the split."""
    traffic = tmp_path / "traffic.json"
    # Candidate 1 at weight 1: every default-route answer is version 1; without the split it is 2.
    traffic.write_text(json.dumps({"hp": {"stable": 2, "candidate": 1, "weight": 1.0, "shadow": 0}}))
    (tmp_path / "models.config").write_text(
        f'model_config_list {{ config {{ name: "hp" base_path: "{root / "hp"}" model_platform: "tensorflow" '
        'model_version_policy { all {} } } }\n')
    grpc_port, rest_port = free_ports(2)
    command = [sys.executable, "-m", "lifecycle.server.main", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
               f"--model_config_file={tmp_path / 'models.config'}", "--file_system_poll_wait_seconds=0",
               f"--mlc_admin_token_file={root / 'token'}", f"--mlc_traffic_file={traffic}"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out)
    client = Client(f"127.0.0.1:{grpc_port}")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                first = client.predict_stub.Predict(predict_request("hp"), timeout=2)  # the first answer it gives
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                time.sleep(0.05)
        assert first.model_spec.version.value == 1
        assert answered_by(client, "hp", version=2) == 2
        connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
        connection.request("GET", TRAFFIC + urllib.parse.quote("hp"), headers={"mlc-admin-token": TOKEN})
        answer = json.loads(connection.getresponse().read())
        assert answer["generation"] == 1
        assert (answer["split"]["stable"], answer["split"]["candidate"], answer["split"]["weight"]) == (2, 1, 1.0)
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)
