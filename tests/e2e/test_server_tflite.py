"""End-to-end: --prefer_tflite_model serves <version>/model.tflite instead of the SavedModel."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

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
