"""TF Serving's gRPC protocol for mlc's client, without TensorFlow.

``tfs_wire_pb2`` holds mlc's own, wire-compatible copies of the messages mlc's client sends
and reads (see ``tfs_wire.proto``), and :data:`METHODS` the gRPC method paths they travel on,
which are plain strings (``/tensorflow.serving.PredictionService/Predict``). Importing this
package costs the protobuf runtime only; the official ``tensorflow_serving.apis`` stubs import
TensorFlow.
"""

from __future__ import annotations

from typing import Any

from lifecycle.serving.wire import tfs_wire_pb2

# protoc's module builds its classes at import time (into its globals()), so a type checker sees
# none of them: callers reach them through this name, typed as what it is to mypy.
messages: Any = tfs_wire_pb2

# (method path, response type of mlc's wire messages), by the name mlc's client calls them.
METHODS: dict[str, tuple[str, Any]] = {
    "Predict": ("/tensorflow.serving.PredictionService/Predict", messages.PredictResponse),
    "Classify": ("/tensorflow.serving.PredictionService/Classify", None),
    "GetModelStatus": ("/tensorflow.serving.ModelService/GetModelStatus", messages.GetModelStatusResponse),
    "HandleReloadConfigRequest": (
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest", messages.ReloadConfigResponse),
}

__all__ = ["METHODS", "messages"]
