"""Sending photos to a served segmentation model, the way the classic DeepLab client does.

One request per photo: ``model_spec`` (name, ``predict_images``, and a version or a label),
inputs ``images`` float32 [1,H,W,3] and ``height``/``width`` int32 [1] built with
``tf.make_tensor_proto`` (see :func:`lifecycle.build.validate.predict_request`). It travels over gRPC,
synchronously with a deadline or through ``Predict.future``, or as TF Serving's columnar REST
JSON. The answer is checked against the contract (an int32 [1,H,W] map of class ids) before it
becomes pictures.

Which model signature to call, and how many classes it has, comes from
``configs/<model>.yaml`` when the home defines the model; a model served by a server this home
does not define is called with the classic DeepLab contract (``predict_images`` ->
``segmentation_map``, 21 VOC classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.errors import ResponseMismatch

if TYPE_CHECKING:  # pragma: no cover
    from tensorflow_serving.apis import predict_pb2

    from lifecycle.serving.client import ServingClient

CLASSIC_SIGNATURE = "predict_images"
CLASSIC_OUTPUT = "segmentation_map"
CLASSIC_NUM_CLASSES = 21


@dataclass(frozen=True)
class Target:
    """What a request asks for: model, version or label, the signature and its output."""

    model: str
    version: int | None = None
    label: str | None = None
    signature: str = CLASSIC_SIGNATURE
    output: str = CLASSIC_OUTPUT
    num_classes: int = CLASSIC_NUM_CLASSES

    def describe(self) -> str:
        """``version 3``, ``label stable`` or ``latest``, as people read it."""
        if self.version is not None:
            return f"version {self.version}"
        if self.label is not None:
            return f"label {self.label}"
        return "latest"


@dataclass(frozen=True)
class Answer:
    """One photo's answer: the class-id map [H, W] and the version that produced it."""

    mask: np.ndarray
    version: int | None


def request(target: Target, photo: np.ndarray) -> predict_pb2.PredictRequest:
    """The PredictRequest for one uint8 RGB photo [H, W, 3]."""
    from lifecycle.build.validate import predict_request

    req = predict_request(target.model, target.signature, photo.astype(np.float32))
    if target.version is not None:
        req.model_spec.version.value = target.version
    elif target.label is not None:
        req.model_spec.version_label = target.label
    return req


def rest_body(target: Target, photo: np.ndarray) -> dict[str, Any]:
    """TF Serving's columnar REST body for one photo (pixel values as JSON integers)."""
    h, w = photo.shape[:2]
    return {
        "signature_name": target.signature,
        "inputs": {"images": photo[None].tolist(), "height": [h], "width": [w]},
    }


def check_mask(target: Target, value: Any, height: int, width: int, where: str) -> np.ndarray:
    """The answer as an int32 [H, W] class map; ResponseMismatch if it breaks the contract."""
    try:
        mask = np.asarray(value)
    except (TypeError, ValueError) as e:  # ragged JSON lists
        raise ResponseMismatch(f"{where}: {target.output!r} is not a rectangular array") from e
    if mask.shape != (1, height, width) or not np.issubdtype(mask.dtype, np.integer):
        raise ResponseMismatch(
            f"{where} answered {target.output!r} as {mask.dtype} {list(mask.shape)}, "
            f"expected int32 [1, {height}, {width}]"
        )
    lo, hi = (int(mask.min()), int(mask.max())) if mask.size else (0, 0)
    if lo < 0 or hi >= max(target.num_classes, 1):
        raise ResponseMismatch(
            f"{where} answered class ids in [{lo}, {hi}], outside the model's {target.num_classes} classes"
        )
    return mask[0].astype(np.int32)


def _from_response(target: Target, response: predict_pb2.PredictResponse, photo: np.ndarray, where: str) -> Answer:
    import tensorflow as tf

    if target.output not in response.outputs:
        raise ResponseMismatch(
            f"{where} answered outputs {sorted(response.outputs)}, not {target.output!r}"
        )
    mask = check_mask(target, tf.make_ndarray(response.outputs[target.output]), *photo.shape[:2], where)
    version = response.model_spec.version.value if response.model_spec.HasField("version") else None
    return Answer(mask, version)


def predict_grpc(
    client: ServingClient, target: Target, photos: list[np.ndarray], timeout: float, use_async: bool
) -> list[Answer]:
    """Send every photo over gRPC: one after another, or all at once through ``Predict.future``."""
    where = f"server {client.grpc_address}"
    requests = [request(target, photo) for photo in photos]
    if use_async:
        futures = [client.predict_future(req, timeout=timeout) for req in requests]
        responses = [client.result(f, f"Predict({target.model})") for f in futures]
    else:
        responses = [client.predict(req, timeout=timeout) for req in requests]
    return [_from_response(target, r, p, where) for r, p in zip(responses, photos, strict=True)]


def predict_rest(client: ServingClient, target: Target, photos: list[np.ndarray], timeout: float) -> list[Answer]:
    """Send every photo to ``POST /v1/models/<m>[/versions/N|/labels/L]:predict``.

    TF Serving's REST answer does not say which version answered; it is read from the
    server's status (the version asked for, the label's version, or the highest AVAILABLE).
    """
    where = f"server {client.rest_address} (REST)"
    answers = []
    for photo in photos:
        body = client.predict_rest(
            target.model, rest_body(target, photo), version=target.version, label=target.label, timeout=timeout
        )
        outputs = body.get("outputs")
        if isinstance(outputs, dict):
            if target.output not in outputs:
                raise ResponseMismatch(f"{where} answered outputs {sorted(outputs)}, not {target.output!r}")
            outputs = outputs[target.output]
        if outputs is None:
            raise ResponseMismatch(f"{where} answered without 'outputs'")
        answers.append(Answer(check_mask(target, outputs, *photo.shape[:2], where), None))
    version = target.version if target.version is not None else client.serving_version(
        target.model, label=target.label, timeout=timeout
    )
    return [Answer(a.mask, version) for a in answers]
