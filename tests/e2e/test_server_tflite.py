"""End-to-end: --prefer_tflite_model serves <version>/model.tflite instead of the SavedModel."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tensorflow_serving.apis import get_model_metadata_pb2

from lifecycle.server import ServerOptions, create_server
from tests.support.savedmodels import build_half_plus_two_tf1, write_tflite_model
from tests.support.server_support import (
    TIMEOUT_S,
    Client,
    model_config,
    server_config,
    value,
)

pytestmark = pytest.mark.e2e


def test_prefer_tflite_model(tmp_path: Path) -> None:
    version = build_half_plus_two_tf1(tmp_path / "hp" / "1")  # SavedModel: y = 0.5 x + 2
    write_tflite_model(version, offset=10.0)                  # model.tflite: y = 0.5 x + 10
    config = server_config(model_config("hp", tmp_path / "hp"))
    for prefer, expected in ((True, [[10.5], [11.0]]), (False, [[2.5], [3.0]])):
        server = create_server(ServerOptions(model_config=config, file_system_poll_wait_seconds=0, rest_api_port=0,
                                             prefer_tflite_model=prefer))
        client = Client(server.grpc_address)
        try:
            assert value(client.predict("hp", [[1.0], [2.0]])).tolist() == expected
            if prefer:
                request = urllib.request.Request(server.rest_url + "/v1/models/hp:predict",
                                                 data=b'{"instances": [[4.0]]}')
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                    assert json.loads(response.read()) == {"predictions": [[12.0]]}
                metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                metadata.model_spec.name = "hp"
                answer = client.predict_stub.GetModelMetadata(metadata, timeout=TIMEOUT_S)
                signatures = get_model_metadata_pb2.SignatureDefMap()
                answer.metadata["signature_def"].Unpack(signatures)
                signature = signatures.signature_def["serving_default"]
                assert signature.inputs["x"].name == "serving_default_x:0"
                assert [d.size for d in signature.inputs["x"].tensor_shape.dim] == [-1, 1]
        finally:
            client.close()
            server.stop()


def _signature_defs(client: Client, name: str) -> dict[str, object]:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = name
    answer = client.predict_stub.GetModelMetadata(request, timeout=TIMEOUT_S)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata["signature_def"].Unpack(signatures)
    return dict(signatures.signature_def)


def test_tflite_without_runners_and_with_metadata_signature_defs(tmp_path: Path) -> None:
    """tflite_session.cc: SignatureDefs from the model's metadata, else serving_default from its tensors."""
    plain = build_half_plus_two_tf1(tmp_path / "plain" / "1")
    write_tflite_model(plain, offset=10.0, signatures="none")
    stored = build_half_plus_two_tf1(tmp_path / "stored" / "1")
    write_tflite_model(stored, offset=20.0, signatures="metadata")
    config = server_config(model_config("plain", tmp_path / "plain"), model_config("stored", tmp_path / "stored"))
    with create_server(ServerOptions(model_config=config, file_system_poll_wait_seconds=0,
                                     prefer_tflite_model=True)) as server:
        client = Client(server.grpc_address)
        try:
            plain_signatures = _signature_defs(client, "plain")
            assert list(plain_signatures) == ["serving_default"]
            generated = plain_signatures["serving_default"]
            assert generated.method_name == "tensorflow/serving/predict"
            assert [(alias, info.name) for alias, info in generated.inputs.items()] == [("serving_default_x", "serving_default_x:0")]
            (out_alias,) = generated.outputs
            response = client.predict("plain", inputs={"serving_default_x": np.array([[1.0], [2.0]], np.float32)})
            assert value(response, out_alias).tolist() == [[10.5], [11.0]]

            stored_signatures = _signature_defs(client, "stored")
            assert list(stored_signatures) == ["predict_y"]
            assert (list(stored_signatures["predict_y"].inputs), list(stored_signatures["predict_y"].outputs)) == (["x"], ["y"])
            response = client.predict("stored", [[2.0]], signature_name="predict_y")
            assert value(response, "y").tolist() == [[21.0]]
        finally:
            client.close()
