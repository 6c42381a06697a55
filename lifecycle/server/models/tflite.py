"""TensorFlow Lite servables: ``--prefer_tflite_model`` serves ``<version>/model.tflite``.

As in TF Serving's TfLiteSession (servables/tensorflow/tflite_session.cc), a version folder
that holds ``model.tflite`` is served from it instead of the SavedModel when
``--prefer_tflite_model`` is set. Its signatures come, in this order, from:

1. SignatureDefs stored in the model's ``signature_defs_metadata`` (TFLite's
   signature_def_util: a FlexBuffer map of name -> serialized SignatureDef), served as written,
   a tensor name that is not in the model tried again without its ``:0`` suffix;
2. the model's signature runners (what today's converter writes; TF Serving builds a single
   ``serving_default`` here instead, mlc keeps the runners' keys and aliases);
3. otherwise one ``serving_default`` signature (method predict) built from the model's input
   and output tensors, each aliased by its name without the ``:N`` suffix, as TF Serving does.

Predict, metadata, batching and warmup work as for any servable; inputs are resized to each
request. The interpreter is not thread-safe, so runs on one servable take turns.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lifecycle.errors import InvalidArgument, LifecycleError, ServingError
from lifecycle.server.models.loader import DEFAULT_SIGNATURE, Servable

log = logging.getLogger("mlc-model-server")

TFLITE_FILE = "model.tflite"
PREDICT_METHOD = "tensorflow/serving/predict"
SIGNATURE_DEFS_METADATA = "signature_defs_metadata"  # tflite::kSignatureDefsMetadataName


def has_tflite_model(path: Path) -> bool:
    """Whether a version folder holds a TFLite model."""
    return (Path(path) / TFLITE_FILE).is_file()


def metadata_signature_defs(model_bytes: bytes) -> dict[str, bytes]:
    """The serialized SignatureDefs in a TFLite model's ``signature_defs_metadata``, by name."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(model_bytes), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != SIGNATURE_DEFS_METADATA.encode():
            continue
        data = model.Buffers(entry.Buffer()).DataAsNumpy()
        signature_map = flexbuffers.GetRoot(bytearray(data.tobytes())).AsMap
        return {key.AsKey: value.AsStringBytes for key, value in zip(signature_map.Keys, signature_map.Values, strict=False)}
    return {}


def _legacy_name(tensor_name: str) -> str:
    """TfToTfLiteLegacyTensorName: a TF tensor name without its ``:N`` suffix."""
    return tensor_name.split(":", 1)[0]


class TfLiteServable(Servable):
    """One version served from its ``model.tflite``."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import meta_graph_pb2

        started = time.monotonic()
        self.name = name
        self.version = version
        self.path = Path(path)
        model = self.path / TFLITE_FILE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
                self._interpreter = tf.lite.Interpreter(model_path=str(model))
            runner_keys = list(self._interpreter.get_signature_list())
            stored = metadata_signature_defs(model.read_bytes())
        except (ValueError, RuntimeError, OSError) as e:
            raise ServingError(f"Failed to load TFLite model {model}: {e}", "INVALID_ARGUMENT") from e
        self._inputs = {d["name"]: d for d in self._interpreter.get_input_details()}
        self._outputs = {d["name"]: d for d in self._interpreter.get_output_details()}
        self.meta_graph = meta_graph_pb2.MetaGraphDef()
        self._runners: dict[str, Any] = {}
        self._runner_tensors: dict[str, tuple[str, str]] = {}  # tensor name -> (signature, alias)
        if stored:
            self._load_stored_signatures(stored)
        elif runner_keys:
            for key in runner_keys:
                self._add_runner(key)
        else:
            log.warning("No signature def found in TFLite model. Generating one.")
            signature = self.meta_graph.signature_def[DEFAULT_SIGNATURE]
            signature.method_name = PREDICT_METHOD
            for io, details in (("inputs", self._inputs), ("outputs", self._outputs)):
                for tensor_name, detail in details.items():
                    _tensor_info(getattr(signature, io)[_legacy_name(tensor_name)], detail, "shape")
        self.signatures = dict(self.meta_graph.signature_def)
        self._run_lock = threading.Lock()
        self.load_seconds = time.monotonic() - started
        self._init_handles()

    def _load_stored_signatures(self, stored: dict[str, bytes]) -> None:
        from google.protobuf.message import DecodeError

        for key, serialized in stored.items():
            signature = self.meta_graph.signature_def[key]
            try:
                signature.ParseFromString(serialized)
            except DecodeError as e:
                raise ServingError(f"Invalid SignatureDefs found in TfLite model: {key}: {e}", "INVALID_ARGUMENT") from e
            for io, known in (("inputs", self._inputs), ("outputs", self._outputs)):
                for alias, info in getattr(signature, io).items():
                    if info.name not in known and _legacy_name(info.name) in known:
                        info.name = _legacy_name(info.name)  # FixTfLiteTensorName
                    if info.name not in known:
                        raise ServingError(
                            f"Signature {io[:-1]} {alias} references an unknown tensor: Unknown tensor '{info.name}'.",
                            "INTERNAL")

    def _add_runner(self, key: str) -> None:
        runner = self._interpreter.get_signature_runner(key)
        signature = self.meta_graph.signature_def[key]
        signature.method_name = PREDICT_METHOD
        for io, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
            for alias, detail in details.items():
                _tensor_info(getattr(signature, io)[alias], detail, "shape_signature")
                self._runner_tensors[detail["name"]] = (key, alias)
        self._runners[key] = runner

    def _free(self) -> None:
        self._runners = {}
        self._interpreter = None

    def _key(self, tensor_name: str) -> Any:
        return tensor_name  # plans run through run_session, by tensor name

    def _run_keys(self, feeds: Mapping[Any, np.ndarray], fetches: list[Any], timeout_ms: int | None,
                  timing: Any = None) -> list[np.ndarray]:
        return self.run_session(feeds, fetches, timeout_ms)  # never timed, so never inline

    def run_session(
        self, feeds: Mapping[str, np.ndarray], fetches: list[str], timeout_ms: int | None = None
    ) -> list[np.ndarray]:
        """Run by tensor names: through a signature runner, or on the interpreter's tensors."""
        names = [*feeds, *fetches]
        try:
            with self._run_lock:
                if self._runners and all(n in self._runner_tensors for n in names):
                    return self._run_runner(feeds, fetches)
                unknown = sorted(n for n in feeds if n not in self._inputs) + sorted(
                    n for n in fetches if n not in self._outputs)
                if unknown:
                    raise InvalidArgument(f"TFLite model cannot run tensors {unknown}")
                return self._run_tensors(feeds, fetches)
        except LifecycleError:
            raise
        except (ValueError, RuntimeError, TypeError) as e:
            raise InvalidArgument(f"TFLite run failed: {e}") from e

    def _run_runner(self, feeds: Mapping[str, np.ndarray], fetches: list[str]) -> list[np.ndarray]:
        keys = {self._runner_tensors[n][0] for n in [*feeds, *fetches]}
        if len(keys) != 1:
            raise InvalidArgument(f"TFLite model cannot run tensors of signatures {sorted(keys)} together")
        key = keys.pop()
        outputs = self._runners[key](**{self._runner_tensors[n][1]: v for n, v in feeds.items()})
        return [np.asarray(outputs[self._runner_tensors[n][1]]) for n in fetches]

    def _run_tensors(self, feeds: Mapping[str, np.ndarray], fetches: list[str]) -> list[np.ndarray]:
        interpreter = self._interpreter
        for tensor_name, value in feeds.items():
            detail = self._inputs[tensor_name]
            if tuple(interpreter.get_tensor_details()[detail["index"]]["shape"]) != tuple(np.shape(value)):
                interpreter.resize_tensor_input(detail["index"], list(np.shape(value)))
        interpreter.allocate_tensors()
        for tensor_name, value in feeds.items():
            detail = self._inputs[tensor_name]
            interpreter.set_tensor(detail["index"], np.asarray(value, dtype=detail["dtype"]))
        interpreter.invoke()
        return [interpreter.get_tensor(self._outputs[n]["index"]).copy() for n in fetches]


def _tensor_info(info: Any, detail: dict, shape_key: str) -> None:
    """Fill a TensorInfo from an interpreter tensor detail (name, dtype, shape)."""
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.python.framework import dtypes

    info.name = detail["name"]
    info.dtype = dtypes.as_dtype(detail["dtype"]).as_datatype_enum
    shape = detail.get(shape_key, detail["shape"])
    info.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape]))
