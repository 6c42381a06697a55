"""The test request a version is probed with, and the checkpoint model's answer to it.

- :func:`load_image`: the definition's test image as float32 RGB;
- :func:`predict_request`: that image as the PredictRequest a client sends
  (``tf.make_tensor_proto``), and :func:`decode_request`: the request serialised, parsed and
  decoded as a server does it (``tf.make_ndarray``);
- :class:`TestRequest`: the three together, built once per register;
- :class:`ReferenceRun`: the checkpoint model's answer to the decoded request (the parity
  reference), computed on a thread while the export is written and loaded.

TensorFlow is imported inside the functions that need it (``mlc predict`` builds its requests
here too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from lifecycle.errors import ImageError

if TYPE_CHECKING:
    from tensorflow_serving.apis.predict_pb2 import PredictRequest


def load_image(path: Path) -> np.ndarray:
    """An RGB image file as float32 [H, W, 3] in [0, 255]; ImageError if missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            rgb.load()
    except FileNotFoundError as e:
        raise ImageError(f"test image not found: {path}") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"test image {path} is not a readable image: {e}") from e
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"test image {path} is empty")
    return arr


def predict_request(model: str, signature: str, image: np.ndarray) -> PredictRequest:
    """The PredictRequest a client sends for one image, built with ``tf.make_tensor_proto``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    h, w = int(image.shape[0]), int(image.shape[1])
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(image[None].astype(np.float32), dtype=tf.float32))
    req.inputs["height"].CopyFrom(tf.make_tensor_proto([h], dtype=tf.int32))
    req.inputs["width"].CopyFrom(tf.make_tensor_proto([w], dtype=tf.int32))
    return req


def decode_request(request: PredictRequest) -> dict[str, np.ndarray]:
    """Serialise, parse and decode a request as a server would (``tf.make_ndarray``)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    return {name: tf.make_ndarray(proto) for name, proto in parsed.inputs.items()}


def run_outputs(fn: Callable[..., Any], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a signature function on decoded inputs; every output round-tripped through a TensorProto."""
    import tensorflow as tf

    result = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: tf.make_ndarray(tf.make_tensor_proto(v.numpy())) for k, v in result.items()}


class TestRequest:
    """The test image as the request a client sends, and that request decoded as a server decodes it."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, model: str, task: Any, image_path: Path) -> None:
        self.task = task
        self.image_path = Path(image_path)
        self.image = load_image(self.image_path)
        self.request = task.request(model, self.image)
        self.decoded = decode_request(self.request)


class ReferenceRun:
    """The checkpoint model's answer to the test request, computed on a thread from the start.

    It needs only the restored network, so it runs while the export is written and loaded (the
    network's kernels release the GIL). Use it as a context manager: leaving the block waits for
    the thread, so nothing runs on after register returns or refuses.
    """

    def __init__(self, fn: Callable[..., Any], inputs: Mapping[str, np.ndarray]) -> None:
        self._outputs: dict[str, np.ndarray] | None = None
        self._error: Exception | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(fn, inputs), name="mlc-reference", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], inputs: Mapping[str, np.ndarray]) -> None:
        started = time.perf_counter()
        try:
            self._outputs = run_outputs(fn, inputs)
        except Exception as e:  # noqa: BLE001 - re-raised in the caller's thread by outputs()
            self._error = e
        self.seconds = time.perf_counter() - started

    def outputs(self) -> dict[str, np.ndarray]:
        """The reference outputs (waits for the thread; raises what the run raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._outputs is not None
        return self._outputs

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()
