"""End-to-end: TF Serving's REST API (/v1/models/...) through urllib on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lifecycle.server import RunningServer, ServerOptions, create_server
from lifecycle.server.rest.json_codec import tensor_json
from tests.support.savedmodels import build_segmenter, build_string_model
from tests.support.server_support import add_version, model_config, server_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, half_plus_two_exports: dict[str, Path]) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("rest_models")
    for v in (1, 2):
        add_version(root / "hp", v)
    shutil.copytree(half_plus_two_exports["tf2"], root / "tf2" / "1")
    build_segmenter(root / "seg" / "1", num_classes=3, width=4)
    build_string_model(root / "text" / "1")
    config = server_config(
        model_config("hp", root / "hp", policy="all", labels={"stable": 1}),
        model_config("tf2", root / "tf2"),
        model_config("seg", root / "seg"),
        model_config("text", root / "text"),
    )
    running = create_server(ServerOptions(
        model_config=config, rest_api_port=0, file_system_poll_wait_seconds=0,
        allow_version_labels_for_unavailable_models=True,
    ))
    yield running
    running.stop()


def call(server: RunningServer, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, str]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(server.rest_url + path, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_status_json_is_exactly_tf_servings(server: RunningServer) -> None:
    status, text = call(server, "/v1/models/hp/versions/2")
    assert status == 200
    assert text == (
        '{\n "model_version_status": [\n  {\n   "version": "2",\n   "state": "AVAILABLE",\n'
        '   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}\n'
    )
    status, text = call(server, "/v1/models/hp")
    assert [s["version"] for s in json.loads(text)["model_version_status"]] == ["2", "1"]
    status, text = call(server, "/v1/models/hp/labels/stable")
    assert json.loads(text)["model_version_status"][0]["version"] == "1"


def error(message: str) -> str:
    """TF Serving's error body for a message."""
    return '{\n    "error": "' + message + '"\n}'


def test_status_errors_map_through_grpc_to_http(server: RunningServer) -> None:
    assert call(server, "/v1/models/nope") == (404, error("Could not find any versions of model nope"))
    assert call(server, "/v1/models/hp/labels/nope") == (400, error("Unrecognized servable version label: nope"))
    status, text = call(server, "/v1/models")
    assert status == 400 and json.loads(text) == {"error": "Missing model name in request."}


def test_metadata(server: RunningServer) -> None:
    status, text = call(server, "/v1/models/hp/labels/stable/metadata")
    assert status == 200
    document = json.loads(text)
    assert document["model_spec"] == {"name": "hp", "signature_name": "", "version": "1"}
    signature = document["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert signature["method_name"] == "tensorflow/serving/predict"


def test_predict_row_and_columnar(server: RunningServer) -> None:
    # Byte for byte what TF Serving's rapidjson writer prints.
    assert call(server, "/v1/models/hp:predict", {"instances": [[1.0], [3.0]]}) == (200, '{\n    "predictions": [[2.5], [3.5]\n    ]\n}')
    assert json.loads(call(server, "/v1/models/hp/versions/1:predict", {"instances": [{"x": [1.0]}]})[1]) == {"predictions": [[1.5]]}
    assert json.loads(call(server, "/v1/models/hp/labels/stable:predict", {"inputs": {"x": [[2.0]]}})[1]) == {"outputs": [[2.0]]}
    assert json.loads(call(server, "/v1/models/tf2:predict", {"signature_name": "serving_default", "inputs": [[2.0]]})[1]) == {"outputs": [[3.0]]}


def test_predict_several_outputs(server: RunningServer) -> None:
    image = [[[0, 0, 0], [255, 255, 255]], [[10, 20, 30], [40, 50, 60]]]
    status, text = call(server, "/v1/models/seg:predict", {"instances": [image]})
    assert status == 200
    row = json.loads(text)["predictions"][0]
    assert set(row) == {"logits", "classes"}
    assert len(row["classes"]) == 2 and len(row["logits"][0][0]) == 3
    status, text = call(server, "/v1/models/seg:predict", {"inputs": {"images": [image]}})
    assert set(json.loads(text)["outputs"]) == {"logits", "classes"}


def test_predict_errors(server: RunningServer) -> None:
    assert call(server, "/v1/models/hp:predict", {"x": 1}) == (400, error("Missing 'inputs' or 'instances' key"))
    status, text = call(server, "/v1/models/hp:predict", raw=b"{not json")
    assert status == 400 and "error" in json.loads(text)
    assert call(server, "/v1/models/nope:predict", {"instances": [[1.0]]}) == (
        404, error("Servable not found for request: Latest(nope)"))
    assert call(server, "/v1/models/hp/versions/9:predict", {"instances": [[1.0]]}) == (
        404, error("Servable not found for request: Specific(hp, 9)"))
    status, text = call(server, "/v1/models/hp:predict", {"signature_name": "nope", "instances": [[1.0]]})
    assert status == 400 and json.loads(text) == {"error": 'Serving signature name: "nope" not found in signature def'}
    status, text = call(server, "/v1/models/hp:classify", {"examples": []})
    assert status == 400 and json.loads(text)["error"].endswith("'examples' value is an empty array")
    status, text = call(server, "/v2/health/ready")
    assert status == 404


def test_predict_parsing_is_as_strict_as_json_tensor_cc(server: RunningServer) -> None:
    # A bool inside a numeric array is a type error, not 1 (AddValueToTensor: IsNumber).
    assert call(server, "/v1/models/hp:predict", {"instances": [[1.0], [True]]}) == (400, error(
        "Failed to process 'instances' list. Error: INVALID_ARGUMENT: JSON Value: true Type: True is not of "
        "expected type: float"))
    assert call(server, "/v1/models/hp:predict", {"inputs": [[False]]}) == (400, error(
        "JSON Value: false Type: False is not of expected type: float"))
    # An integer into float is accepted whatever its size (TF Serving dropped the lossless check).
    status, text = call(server, "/v1/models/hp:predict", {"instances": [[16777217]]})
    assert (status, json.loads(text)) == (200, {"predictions": [[8388610.0]]})
    # Into uint8 images: any int32 (the tensor keeps the low bits); a fraction is a type error.
    status, _ = call(server, "/v1/models/seg:predict", {"instances": [[[[300, 0, 1]]]]})
    assert status == 200
    assert call(server, "/v1/models/seg:predict", {"instances": [[[[1.5, 0, 1]]]]}) == (400, error(
        "Failed to process 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1.5 Type: Number is not of "
        "expected type: uint8"))


def test_predict_strings_and_base64(server: RunningServer) -> None:
    status, text = call(server, "/v1/models/text:predict", {"instances": ["ab", {"b64": "/wA="}]})
    assert status == 200, text
    assert json.loads(text) == {"predictions": [
        {"length": 2, "echo_bytes": {"b64": "YWI="}},
        {"length": 2, "echo_bytes": {"b64": "/wA="}},
    ]}
    status, text = call(server, "/v1/models/text:predict", {"inputs": {"text": ["xyz"]}})
    assert json.loads(text) == {"outputs": {"length": [3], "echo_bytes": [{"b64": "eHl6"}]}}


def test_floats_are_written_as_tf_serving_writes_them(server: RunningServer) -> None:
    # 0.5 * -1.8f + 1 is 0.100000024f: nine digits because six do not round-trip (Python's
    # json would print 0.10000002384185791); whole numbers get ".0".
    status, text = call(server, "/v1/models/hp/versions/1:predict", {"instances": [[-1.8], [2.0]]})
    assert (status, text) == (200, '{\n    "predictions": [[0.100000024], [2.0]\n    ]\n}')
    values = np.array([0.1, 1e-05, 9000000, 3, np.nan, -np.inf], np.float32)
    assert tensor_json("y", values) == "[0.1, 1e-05, 9e+06, 3.0, NaN, -Infinity]"
    assert tensor_json("n", np.array([[1, -2]], np.int64)) == "[[1, -2]]"
