"""End-to-end: loading every SavedModel flavour and TF Serving's Predict/metadata semantics.

One server (module scope) serves half_plus_two exported four ways; clients are the official
tensorflow_serving.apis stubs over a real channel to 127.0.0.1.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_metadata_pb2

from lifecycle.server import RunningServer, ServerOptions, create_server
from tests.support.savedmodels import build_half_plus_two_tf1
from tests.support.server_support import Client, model_config, server_config, value

pytestmark = pytest.mark.e2e

FLAVOURS = ["tf1", "tf1_text", "tf2", "keras"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, half_plus_two_exports: dict[str, Path]) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("predict_models")
    models = []
    for flavour in FLAVOURS:
        shutil.copytree(half_plus_two_exports[flavour], root / flavour / "1")
        models.append(model_config(flavour, root / flavour))
    # A TF1 model whose signature is not "serving_default" and whose method_name is unusual.
    build_half_plus_two_tf1(root / "odd" / "7", signature_name="regress_x_to_y", method_name="tensorflow/serving/regress")
    models.append(model_config("odd", root / "odd"))
    running = create_server(ServerOptions(model_config=server_config(*models), file_system_poll_wait_seconds=0))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    c = Client(server.grpc_address)
    yield c
    c.close()


def _keras_input(client: Client, name: str) -> str:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = name
    response = client.predict_stub.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return next(iter(signatures.signature_def["serving_default"].inputs))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_flavour_answers_half_plus_two(client: Client, flavour: str) -> None:
    response = client.predict(flavour, [[1.0], [2.0], [5.0]])
    out_alias = next(iter(response.outputs))
    np.testing.assert_allclose(value(response, out_alias), [[2.5], [3.0], [4.5]])
    assert response.model_spec.name == flavour
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_status_lists_every_flavour_available(client: Client) -> None:
    for flavour in FLAVOURS:
        assert client.status(flavour) == {1: ("AVAILABLE", 0, "")}


def test_lenient_feed_of_rank_one_into_none_by_one(client: Client) -> None:
    # TF Serving does not reject a [1] tensor fed into a (None, 1) placeholder.
    response = client.predict("tf1", np.array([3.0], np.float32))
    np.testing.assert_allclose(value(response), [3.5])


def test_named_signature_and_method_name_not_enforced(client: Client) -> None:
    response = client.predict("odd", [[2.0]], signature_name="regress_x_to_y")
    np.testing.assert_allclose(value(response), [[3.0]])
    assert response.model_spec.version.value == 7
    assert response.model_spec.signature_name == "regress_x_to_y"


def test_missing_signature_is_failed_precondition(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.predict("odd", [[2.0]])
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == 'Serving signature key "serving_default" not found.'


def test_unknown_model_is_not_found_latest(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.predict("nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Servable not found for request: Latest(nope)"


def test_unknown_version_is_not_found_specific(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.predict("tf1", version=9)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Servable not found for request: Specific(tf1, 9)"


def test_unknown_label_is_invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.predict("tf1", label="canary")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Unrecognized servable version label: canary"


def test_wrong_input_alias_and_dtype_are_invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.predict("tf1", inputs={"z": np.array([[1.0]], np.float32)})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "input tensor alias not found in signature: z. Inputs expected to be in the set {x}."
    with pytest.raises(grpc.RpcError) as info:
        client.predict("tf1", inputs={"x": np.array([[1.0]], np.float64)})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[0] to be float but double is provided" in info.value.details()


def test_output_filter_is_honoured(client: Client) -> None:
    assert set(client.predict("tf1", output_filter=["y"]).outputs) == {"y"}
    with pytest.raises(grpc.RpcError) as info:
        client.predict("tf1", output_filter=["nope"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("output tensor alias not found in signature: nope")


def test_get_model_metadata(client: Client) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tf2"
    response = client.predict_stub.GetModelMetadata(request, timeout=10)
    assert response.model_spec.name == "tf2"
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def["serving_default"].inputs) == {"x"}

    request.ClearField("metadata_field")
    with pytest.raises(grpc.RpcError) as info:
        client.predict_stub.GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "GetModelMetadataRequest must specify at least one metadata_field"


def test_status_errors(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.status("nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Could not find any versions of model nope"
    with pytest.raises(grpc.RpcError) as info:
        client.status("tf1", version=3)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Could not find version 3 of model tf1"


def test_classify_on_a_predict_signature_is_refused(client: Client) -> None:
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tf1"
    request.input.example_list.examples.add()
    with pytest.raises(grpc.RpcError) as info:
        client.predict_stub.Classify(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details().startswith("No classification inputs found in SignatureDef")


def test_serialization_as_tensor_content(tmp_path: Path, half_plus_two_exports: dict[str, Path]) -> None:
    """--enable_serialization_as_tensor_content: outputs as raw tensor_content, not float_val."""
    shutil.copytree(half_plus_two_exports["tf1"], tmp_path / "m" / "1")
    config = server_config(model_config("m", tmp_path / "m"))
    for content in (False, True):
        with create_server(ServerOptions(model_config=config, file_system_poll_wait_seconds=0,
                                         enable_serialization_as_tensor_content=content)) as running:
            client = Client(running.grpc_address)
            try:
                out = client.predict("m", [[1.0], [3.0]]).outputs["y"]
            finally:
                client.close()
        assert (len(out.tensor_content) == 8, list(out.float_val)) == ((True, []) if content else (False, [2.5, 3.5]))
        np.testing.assert_allclose(value_of(out), [[2.5], [3.5]])


def value_of(tensor: object) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(tensor)
