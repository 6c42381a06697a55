"""TensorFlow Lite servables: ``--prefer_tflite_model`` serves ``<version>/model.tflite``.

As in TF Serving's TfLiteSession, a version folder that holds ``model.tflite`` is served from
it instead of the SavedModel when ``--prefer_tflite_model`` is set. The model's signature
runners become the servable's signatures: same keys, input and output aliases, dtypes and
shapes (``-1`` for dynamic dimensions), and TFLite's tensor names. Predict, metadata, batching
and warmup work as for any servable; the interpreter resizes its inputs to each request.

The interpreter is not thread-safe, so runs on one servable take turns.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lifecycle.errors import InvalidArgument, LifecycleError, ServingError
from lifecycle.server.loader import Servable

TFLITE_FILE = "model.tflite"
PREDICT_METHOD = "tensorflow/serving/predict"


def has_tflite_model(path: Path) -> bool:
    """Whether a version folder holds a TFLite model."""
    return (Path(path) / TFLITE_FILE).is_file()


class TfLiteServable(Servable):
    """One version served from its ``model.tflite`` through TFLite signature runners."""

    def __init__(self, name: str, version: int, path: Path) -> None:  # noqa: D107 - the base's
        import tensorflow as tf
        from tensorflow.core.framework import tensor_shape_pb2
        from tensorflow.core.protobuf import meta_graph_pb2
        from tensorflow.python.framework import dtypes

        started = time.monotonic()
        self.name = name
        self.version = version
        self.path = Path(path)
        model = self.path / TFLITE_FILE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
                self._interpreter = tf.lite.Interpreter(model_path=str(model))
            listing = self._interpreter.get_signature_list()
        except (ValueError, RuntimeError, OSError) as e:
            raise ServingError(f"Failed to load TFLite model {model}: {e}", "INVALID_ARGUMENT") from e
        self.meta_graph = meta_graph_pb2.MetaGraphDef()
        self.signatures = {}
        self._runners = {}
        self._tensor_names: dict[str, tuple[str, str, str]] = {}  # tensor name -> (signature, io, alias)
        for key in listing:
            runner = self._interpreter.get_signature_runner(key)
            signature = self.meta_graph.signature_def[key]
            signature.method_name = PREDICT_METHOD
            for io, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
                for alias, detail in details.items():
                    info = getattr(signature, io)[alias]
                    info.name = detail["name"]
                    info.dtype = dtypes.as_dtype(detail["dtype"]).as_datatype_enum
                    shape = detail.get("shape_signature", detail["shape"])
                    info.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
                        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape]))
                    self._tensor_names[detail["name"]] = (key, io, alias)
            self._runners[key] = runner
            self.signatures[key] = signature
        self._run_lock = threading.Lock()
        self.load_seconds = time.monotonic() - started
        self._lock = threading.Condition()
        self._refs = 0
        self._closing = False
        self.batch_runner = None
        self.on_close = []

    def close(self) -> None:
        """Refuse new handles, wait for the in-flight ones, then drop the interpreter."""
        with self._lock:
            self._closing = True
            while self._refs:
                self._lock.wait()
        for callback in self.on_close:
            callback()
        self._runners = {}
        self._interpreter = None

    def run_session(
        self, feeds: Mapping[str, np.ndarray], fetches: list[str], timeout_ms: int | None = None
    ) -> list[np.ndarray]:
        """Run the signature the tensor names belong to (one signature per run)."""
        keys = {self._tensor_names[name][0] for name in [*feeds, *fetches] if name in self._tensor_names}
        unknown = [name for name in [*feeds, *fetches] if name not in self._tensor_names]
        if unknown or len(keys) != 1:
            raise InvalidArgument(f"TFLite model cannot run tensors {sorted(unknown) or sorted(keys)} together")
        key = keys.pop()
        inputs = {self._tensor_names[name][2]: value for name, value in feeds.items()}
        try:
            with self._run_lock:
                outputs = self._runners[key](**inputs)
        except LifecycleError:
            raise
        except (ValueError, RuntimeError, TypeError) as e:
            raise InvalidArgument(f"TFLite run of signature {key} failed: {e}") from e
        return [np.asarray(outputs[self._tensor_names[name][2]]) for name in fetches]
