"""Helpers for the server tests: configs as protos, official stubs, waiting for states."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from tests.support.polling import wait_until
from tests.support.savedmodels import build_half_plus_two_tf1

TIMEOUT_S = 10.0


def model_config(
    name: str,
    base_path: Path | str,
    policy: str = "latest",
    versions: Iterable[int] = (),
    num_versions: int = 1,
    labels: dict[str, int] | None = None,
) -> model_server_config_pb2.ModelConfig:
    """One ModelConfig proto."""
    config = model_server_config_pb2.ModelConfig(name=name, base_path=str(base_path), model_platform="tensorflow")
    if policy == "all":
        config.model_version_policy.all.SetInParent()
    elif policy == "specific":
        config.model_version_policy.specific.versions.extend(versions)
    else:
        config.model_version_policy.latest.num_versions = num_versions
    for label, version in (labels or {}).items():
        config.version_labels[label] = version
    return config


def server_config(*models: model_server_config_pb2.ModelConfig) -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig listing ``models``."""
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.extend(models)
    return config


def add_version(base: Path, version: int, before_publish: Callable[[Path], object] | None = None) -> Path:
    """Publish half_plus_two version ``version`` (y = 0.5 * x + version) under ``base``.

    Like mlc's export, the folder is built under a non-integer name and renamed into place,
    so a polling server never sees a half-written version. ``before_publish`` may add files
    (e.g. warmup records) to the staged folder.
    """
    staging = base / f".staging-{version}"
    build_half_plus_two_tf1(staging, offset=float(version))
    if before_publish is not None:
        before_publish(staging)
    target = base / str(version)
    staging.rename(target)
    return target


class Client:
    """The official stubs on one channel, with a deadline on every call."""

    def __init__(self, address: str) -> None:
        # Short reconnect backoff: tests connect while a child server is still starting.
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300)]
        )
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def predict(
        self,
        name: str,
        x: np.ndarray | list[float] | None = None,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = "",
        inputs: dict[str, np.ndarray] | None = None,
        output_filter: Iterable[str] = (),
    ) -> predict_pb2.PredictResponse:
        """Predict through PredictionServiceStub; x defaults to [[1.0]] on input 'x'."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
        if inputs is None:
            inputs = {"x": np.asarray([[1.0]] if x is None else x, dtype=np.float32)}
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
        request.output_filter.extend(output_filter)
        return self.predict_stub.Predict(request, timeout=TIMEOUT_S)

    def status(self, name: str, version: int | None = None) -> dict[int, tuple[str, int, str]]:
        """{version: (state name, error code, error message)} from GetModelStatus."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        response = self.model_stub.GetModelStatus(request, timeout=TIMEOUT_S)
        states = get_model_status_pb2.ModelVersionStatus.State
        return {
            s.version: (states.Name(s.state), s.status.error_code, s.status.error_message)
            for s in response.model_version_status
        }

    def reload(self, config: model_server_config_pb2.ModelServerConfig, timeout: float = 60) -> None:
        """HandleReloadConfigRequest with a whole config."""
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        self.model_stub.HandleReloadConfigRequest(request, timeout=timeout)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def wait_state(client: Client, name: str, version: int, state: str, timeout: float = 30.0) -> None:
    """Wait until GetModelStatus reports ``state`` for one version."""
    wait_until(lambda: client.status(name).get(version, ("",))[0] == state, timeout,
               what=f"{name} version {version} to be {state}", ignore=(grpc.RpcError,))


def value(response: predict_pb2.PredictResponse, alias: str = "y") -> np.ndarray:
    """An output of a PredictResponse as an array."""
    return tf.make_ndarray(response.outputs[alias])


@contextlib.contextmanager
def default_grpc_transport(transport: str) -> Iterator[None]:
    """Servers started by create_server in this block use ``transport`` unless their options name one.

    How the gRPC test modules are run again on the asyncio transport (tests/e2e/test_server_asyncio*.py).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lifecycle.server.app.DEFAULT_GRPC_TRANSPORT", transport)
        yield
