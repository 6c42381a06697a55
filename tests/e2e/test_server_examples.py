"""End-to-end: Classify, Regress and MultiInference over tf.Example inputs, gRPC and REST.

The model follows TF Serving's own half_plus_two test model: tf.Example signatures for
classify and regress beside a predict signature. Clients are the official stubs and urllib.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from lifecycle.server import RunningServer, ServerOptions, create_server
from tests.support.savedmodels import build_examples_tf2, build_half_plus_two_examples
from tests.support.server_support import TIMEOUT_S, Client, model_config, server_config

pytestmark = pytest.mark.e2e


def _warmup_records(version_dir: Path) -> None:
    """Warmup records of every kind TF Serving replays: classify, regress, multi-inference."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    entry = prediction_log_pb2.PredictionLog()
    _examples(entry.classify_log.request.input, [1.0])
    entry.classify_log.request.model_spec.signature_name = "classify_x_to_y"
    logs.append(entry)
    entry = prediction_log_pb2.PredictionLog()
    _examples(entry.regress_log.request.input, [1.0])
    entry.regress_log.request.model_spec.signature_name = "regress_x_to_y"
    logs.append(entry)
    entry = prediction_log_pb2.PredictionLog()
    _examples(entry.multi_inference_log.request.input, [1.0])
    task = entry.multi_inference_log.request.tasks.add()
    task.model_spec.name = "hpt"
    task.model_spec.signature_name = "regress_x_to_y"
    task.method_name = "tensorflow/serving/regress"
    logs.append(entry)
    target = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for entry in logs:
            writer.write(entry.SerializeToString())


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example_models")
    build_half_plus_two_examples(root / "hpt" / "1")
    _warmup_records(root / "hpt" / "1")
    build_examples_tf2(root / "tf2" / "1")
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[RunningServer]:
    running = create_server(ServerOptions(
        model_config=server_config(model_config("hpt", root / "hpt"), model_config("tf2", root / "tf2")),
        rest_api_port=0,
        file_system_poll_wait_seconds=0,
    ))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    c = Client(server.grpc_address)
    yield c
    c.close()


def _examples(input_proto: Any, xs: list[float], context: dict[str, float] | None = None) -> None:
    if context is not None:
        listed = input_proto.example_list_with_context
        for name, value in context.items():
            listed.context.features.feature[name].float_list.value.append(value)
        target = listed.examples
    else:
        target = input_proto.example_list.examples
    for x in xs:
        target.add().features.feature["x"].float_list.value.append(x)


def _classify(client: Client, signature: str, xs: list[float], **kw: Any) -> classification_pb2.ClassificationResponse:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = signature
    _examples(request.input, xs, **kw)
    return client.predict_stub.Classify(request, timeout=TIMEOUT_S)


def _regress(client: Client, signature: str, xs: list[float], **kw: Any) -> regression_pb2.RegressionResponse:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = signature
    _examples(request.input, xs, **kw)
    return client.predict_stub.Regress(request, timeout=TIMEOUT_S)


def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_classify_scores_and_classes(client: Client) -> None:
    response = _classify(client, "classify_x_to_y", [2.0, 4.0])
    assert [[(c.label, c.score) for c in cs.classes] for cs in response.result.classifications] == [[("", 3.0)], [("", 4.0)]]
    assert response.model_spec.name == "hpt" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "classify_x_to_y"
    response = _classify(client, "classify_labels", [2.0])
    assert [(c.label, c.score) for c in response.result.classifications[0].classes] == [("neg", -3.0), ("pos", 3.0)]


def test_regress_with_and_without_context(client: Client) -> None:
    assert [r.value for r in _regress(client, "regress_x_to_y", [1.0, 3.0]).result.regressions] == [2.5, 3.5]
    # The context supplies x2 for examples that lack it; an example's own value wins.
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = "regress_x2_to_y3"
    listed = request.input.example_list_with_context
    listed.context.features.feature["x2"].float_list.value.append(10.0)
    listed.context.features.feature["x"].float_list.value.append(0.0)  # the graph parses x too
    listed.examples.add().features.feature["x2"].float_list.value.append(2.0)
    listed.examples.add()
    response = client.predict_stub.Regress(request, timeout=TIMEOUT_S)
    assert [r.value for r in response.result.regressions] == [4.0, 8.0]


def test_multi_inference_runs_tasks_on_one_input(client: Client) -> None:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "classify"), ("regress_x_to_y", "regress"), ("regress_x2_to_y3", "regress")):
        task = request.tasks.add()
        task.model_spec.name = "hpt"
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    _examples(request.input, [2.0], context={"x2": 4.0})
    response = client.predict_stub.MultiInference(request, timeout=TIMEOUT_S)
    results = list(response.results)
    assert [r.model_spec.signature_name for r in results] == ["classify_x_to_y", "regress_x_to_y", "regress_x2_to_y3"]
    assert all(r.model_spec.version.value == 1 for r in results)
    assert results[0].classification_result.classifications[0].classes[0].score == 3.0
    assert [r.regression_result.regressions[0].value for r in results[1:]] == [3.0, 5.0]


def test_multi_inference_across_signatures_with_their_own_inputs(client: Client) -> None:
    """TF Serving's multi_inference.cc feeds the same examples to each signature's input tensor."""
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "classify"), ("regress_x_to_y", "regress")):
        task = request.tasks.add()
        task.model_spec.name = "tf2"
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    _examples(request.input, [2.0, 6.0])
    response = client.predict_stub.MultiInference(request, timeout=TIMEOUT_S)
    classified, regressed = response.results
    assert [c.classes[0].score for c in classified.classification_result.classifications] == [3.0, 5.0]
    assert [r.value for r in regressed.regression_result.regressions] == [2.0, 4.0]
    assert [r.model_spec.signature_name for r in response.results] == ["classify_x_to_y", "regress_x_to_y"]


def test_multi_inference_errors(client: Client) -> None:
    def request(*tasks: tuple[str, str, str]) -> inference_pb2.MultiInferenceRequest:
        r = inference_pb2.MultiInferenceRequest()
        for name, signature, method in tasks:
            t = r.tasks.add()
            t.model_spec.name, t.model_spec.signature_name, t.method_name = name, signature, method
        _examples(r.input, [1.0])
        return r

    regress = "tensorflow/serving/regress"
    call = client.predict_stub.MultiInference
    assert _code(lambda: call(request(("hpt", "regress_x_to_y", regress), ("other", "regress_x2_to_y3", regress)), timeout=TIMEOUT_S)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
    assert _code(lambda: call(request(("hpt", "regress_x_to_y", regress), ("hpt", "regress_x_to_y", regress)), timeout=TIMEOUT_S)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y")
    assert _code(lambda: call(request(("hpt", "regress_x_to_y", "tensorflow/serving/predict")), timeout=TIMEOUT_S)) == (
        grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict")
    assert _code(lambda: call(request(("hpt", "nope", regress)), timeout=TIMEOUT_S)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Requested signature not found in model graph: nope")
    assert _code(lambda: call(inference_pb2.MultiInferenceRequest(), timeout=TIMEOUT_S)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")


def test_classify_regress_errors(client: Client) -> None:
    assert _code(lambda: _classify(client, "nope", [1.0])) == (
        grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: nope")
    code, message = _code(lambda: _classify(client, "regress_x_to_y", [1.0]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message.startswith('Expected classification signature outputs to contain at least one of "classes" or "scores".')
    code, message = _code(lambda: _regress(client, "", [1.0]))  # serving_default is a predict signature on "x"
    assert code == grpc.StatusCode.FAILED_PRECONDITION and message.startswith("No regression inputs found in SignatureDef")
    assert _code(lambda: _regress(client, "regress_x_to_y", [])) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add()  # no feature x: the model's parser refuses it
    code, _ = _code(lambda: client.predict_stub.Regress(request, timeout=TIMEOUT_S))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.name = "nope"
    assert _code(lambda: client.predict_stub.Regress(request, timeout=TIMEOUT_S)) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")


def _post(server: RunningServer, path: str, body: Any) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.rest_url + path, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_rest_classify_and_regress_print_tf_servings_json(server: RunningServer) -> None:
    status, body = _post(server, "/v1/models/hpt:classify", {
        "signature_name": "classify_labels", "examples": [{"x": 2.0}, {"x": [4.0]}]})
    assert status == 200
    assert body == b'{\n    "results": [[["neg", -3.0], ["pos", 3.0]], [["neg", -4.0], ["pos", 4.0]]\n    ]\n}'
    status, body = _post(server, "/v1/models/hpt/versions/1:regress", {
        "signature_name": "regress_x2_to_y3", "context": {"x2": 10.0, "x": 0.0}, "examples": [{"x2": 2.0}, {}]})
    assert (status, body) == (200, b'{\n    "results": [4.0, 8.0]\n}')


def test_rest_classify_regress_errors(server: RunningServer) -> None:
    status, body = _post(server, "/v1/models/hpt:regress", {"signature_name": "regress_x_to_y"})
    assert status == 400
    assert json.loads(body)["error"].endswith("When method is classify, key 'examples' is expected and was not found")
    status, body = _post(server, "/v1/models/hpt:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": [1.0, 2]}]})
    assert (status, json.loads(body)) == (400, {"error": "Unexpected element type in feature: x expecting type: float"})
    status, body = _post(server, "/v1/models/hpt:classify", {"examples": [{"x": {"b64": "!!"}}]})
    assert (status, json.loads(body)) == (400, {"error": "Unable to base64 decode"})
    status, body = _post(server, "/v1/models/hpt:regress", {"examples": [[1.0]]})
    assert (status, json.loads(body)) == (400, {"error": "Example must be JSON object but got JSON Array"})


def test_signature_method_name_check(root: Path) -> None:
    """--enable_signature_method_name_check: an API runs only signatures of its own method."""
    checked = create_server(ServerOptions(
        model_config=server_config(model_config("hpt", root / "hpt")), file_system_poll_wait_seconds=0,
        enable_signature_method_name_check=True, enable_model_warmup=False,
    ))
    client = Client(checked.grpc_address)
    try:
        assert _code(lambda: _regress(client, "classify_x_to_y", [1.0])) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/classify")
        assert [r.value for r in _regress(client, "regress_x_to_y", [1.0]).result.regressions] == [2.5]
    finally:
        client.close()
        checked.stop()
