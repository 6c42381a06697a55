"""Sending photos to a served segmentation model, the way the classic DeepLab client does.

One request per photo: ``model_spec`` (name, ``predict_images``, and a version or a label),
inputs ``images`` float32 [1,H,W,3] and ``height``/``width`` int32 [1] built with
``tf.make_tensor_proto`` (see :func:`lifecycle.register.probe.predict_request`). It travels over gRPC,
synchronously with a deadline or through ``Predict.future``, or as TF Serving's columnar REST
JSON. The answer is checked against the contract (an int32 [1,H,W] map of class ids) before it
becomes pictures.

Which model signature to call, and how many classes it has, is the request's target
(:mod:`lifecycle.predictions.target`): ``configs/<model>.yaml`` when the home defines the
model, else the classic DeepLab contract. A classifier is asked through
:mod:`lifecycle.predictions.classify`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle import progress
from lifecycle.errors import LifecycleError, ResponseMismatch, ServableNotFound, ServerUnavailable, UsageError
from lifecycle.predictions.classify import classify_photos
from lifecycle.predictions.target import RequestTarget, request_target
from lifecycle.serving import fleet, replicas
from lifecycle.serving.client import answered_version
from lifecycle.store.config import Paths, check_model_name

if TYPE_CHECKING:  # pragma: no cover
    from tensorflow_serving.apis import predict_pb2

    from lifecycle.serving.client import ServingClient


@dataclass(frozen=True)
class Answer:
    """One photo's answer: the class-id map [H, W] and the version that produced it."""

    mask: np.ndarray
    version: int | None


def request(target: RequestTarget, photo: np.ndarray) -> predict_pb2.PredictRequest:
    """The PredictRequest for one uint8 RGB photo [H, W, 3]."""
    from lifecycle.register.probe import predict_request

    req = predict_request(target.model, target.signature, photo.astype(np.float32))
    if target.version is not None:
        req.model_spec.version.value = target.version
    elif target.label is not None:
        req.model_spec.version_label = target.label
    return req


def rest_body(target: RequestTarget, photo: np.ndarray) -> dict[str, Any]:
    """TF Serving's columnar REST body for one photo (pixel values as JSON integers)."""
    h, w = photo.shape[:2]
    return {
        "signature_name": target.signature,
        "inputs": {"images": photo[None].tolist(), "height": [h], "width": [w]},
    }


def mask_from_answer(target: RequestTarget, value: Any, height: int, width: int, where: str) -> np.ndarray:
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


def _from_response(target: RequestTarget, response: predict_pb2.PredictResponse, photo: np.ndarray, where: str) -> Answer:
    import tensorflow as tf

    if target.output not in response.outputs:
        raise ResponseMismatch(
            f"{where} answered outputs {sorted(response.outputs)}, not {target.output!r}"
        )
    height, width = photo.shape[:2]
    mask = mask_from_answer(target, tf.make_ndarray(response.outputs[target.output]), height, width, where)
    return Answer(mask, answered_version(response))


def predict_grpc(
    client: ServingClient, target: RequestTarget, photos: list[np.ndarray], timeout: float, use_async: bool
) -> list[Answer]:
    """Send every photo over gRPC: one after another, or all at once through ``Predict.future``."""
    where = f"server {client.grpc_address}"
    responses = client.call_all("Predict", [request(target, photo) for photo in photos], timeout, use_async)
    return [_from_response(target, r, p, where) for r, p in zip(responses, photos, strict=True)]


def predict_rest(client: ServingClient, target: RequestTarget, photos: list[np.ndarray], timeout: float) -> list[Answer]:
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
        height, width = photo.shape[:2]
        answers.append(Answer(mask_from_answer(target, outputs, height, width, where), None))
    version = target.version if target.version is not None else client.serving_version(
        target.model, label=target.label, timeout=timeout
    )
    return [Answer(a.mask, version) for a in answers]


# --- mlc predict ----------------------------------------------------------------------------


@dataclass
class ImagePrediction:
    """One photo's answer as ``mlc predict`` reports it."""

    image: str
    width: int
    height: int
    version: int | None
    mask: str | None  # segmentation: the mask and overlay PNGs; classification: None
    overlay: str | None
    classes: dict[str, float]  # segmentation: share of pixels per class; classification: top-k scores


@dataclass
class PredictResult:
    """The result of ``mlc predict``."""

    model: str
    server: str
    transport: str  # grpc | rest
    call: str  # sync | async
    asked: str  # "version 3", "label stable" or "latest"
    images: list[ImagePrediction]
    task: str = "segmentation"  # or "classification"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def predict_photos(
    paths: Paths,
    model: str,
    images: list[str | Path],
    version: int | None = None,
    label: str | None = None,
    server: str | None = None,
    rest: bool = False,
    use_async: bool = False,
    timeout: float = 30.0,
    out: str | Path = ".",
    overwrite: bool = False,
) -> PredictResult:
    """``mlc predict``: send photos to the served model; write a mask and an overlay PNG for each.

    Every photo is read before anything is sent, so a file that is not an image sends nothing.
    The pictures are named by the version that answered (``<name>.v<N>.mask.png``); a picture
    another version wrote is replaced only with ``overwrite``, else nothing is written.
    """
    check_model_name(model)
    if version is not None and label is not None:
        raise UsageError("give --version or --label, not both")
    if use_async and rest:
        raise UsageError("--async is a gRPC call (Predict.future); it does not combine with --rest")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    if not images:
        raise UsageError("name at least one image")
    stems = [Path(p).name.rsplit(".", 1)[0] for p in images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise UsageError(f"several images would write {clash[0]}.mask.png; predict them into different --out folders")

    from lifecycle.predictions import pictures
    from lifecycle.serving.client import ServingClient

    progress.step("reading the photos")
    photos = [pictures.read_photo(p) for p in images]
    target = request_target(paths, model, version, label)
    spec = server_spec(paths, server, rest)
    where = (spec.rest if rest else spec.grpc) or ""
    progress.step(f"asking {where} for {target.describe()} ({len(photos)} photo{'s' if len(photos) != 1 else ''})")
    if target.classes:
        with label_errors(target, spec), ServingClient.of(spec, timeout) as client:
            answered = classify_photos(target, photos, client, rest, use_async, timeout)
        results = [
            ImagePrediction(image=str(path), width=int(photo.shape[1]), height=int(photo.shape[0]), version=a.version,
                            mask=None, overlay=None, classes=dict(a.scores))
            for path, photo, a in zip(images, photos, answered, strict=True)
        ]
        return PredictResult(model, where, "rest" if rest else "grpc",
                             "async" if use_async else "sync", target.describe(), results, "classification")
    with label_errors(target, spec), ServingClient.of(spec, timeout) as client:
        if rest:
            answers = predict_rest(client, target, photos, timeout)
        else:
            answers = predict_grpc(client, target, photos, timeout, use_async)

    folder = Path(out)
    files = [picture_names(folder, stem, answer.version) for stem, answer in zip(stems, answers, strict=True)]
    if not overwrite:  # every file is checked before the first is written
        for (mask_path, overlay_path), answer in zip(files, answers, strict=True):
            for file in (mask_path, overlay_path):
                pictures.refuse_other_version(file, answer.version)
    progress.step(f"writing the pictures into {folder}")
    results = []
    for path, (mask_path, overlay_path), photo, answer in zip(images, files, photos, answers, strict=True):
        tag = pictures.version_tag(answer.version)
        mask_file = pictures.write_png(mask_path, pictures.mask_image(answer.mask), tag)
        overlay_file = pictures.write_png(overlay_path, pictures.overlay(photo, answer.mask), tag)
        results.append(
            ImagePrediction(
                image=str(path), width=int(photo.shape[1]), height=int(photo.shape[0]), version=answer.version,
                mask=str(mask_file), overlay=str(overlay_file),
                classes=pictures.class_shares(answer.mask, target.num_classes),
            )
        )
    return PredictResult(
        model=model,
        server=where,
        transport="rest" if rest else "grpc",
        call="async" if use_async else "sync",
        asked=target.describe(),
        images=results,
    )


def picture_names(folder: Path, stem: str, version: int | None) -> tuple[Path, Path]:
    """The mask and overlay files of one photo: ``<stem>.v<N>.mask.png`` (no ``v<N>`` for an unknown version)."""
    named = stem if version is None else f"{stem}.v{version}"
    return folder / f"{named}.mask.png", folder / f"{named}.overlay.png"


@contextmanager
def label_errors(target: RequestTarget, spec: fleet.ServerSpec) -> Iterator[None]:
    """A label the server does not know becomes one line naming the labels it has."""
    try:
        yield
    except LifecycleError as e:
        if target.label is None or "version label" not in e.message.lower():
            raise
        try:
            known = replicas.labels(spec, target.model, timeout=2.0) if spec.rest else {}
        except LifecycleError:
            known = {}
        listed = ", ".join(f"{label} → {v}" for label, v in sorted(known.items())) or "none"
        raise ServableNotFound(f"{target.model} has no {target.label}; labels: {listed}") from e


def server_spec(paths: Paths, server: str | None, rest: bool) -> fleet.ServerSpec:
    """The server to ask: ``--server`` (with the TLS configs/servers.yaml gives it), else the first known."""
    if server is not None:
        return fleet.named(paths, server, rest)
    known = fleet.load(paths)
    for spec in known.servers:
        if not rest or spec.rest:
            return spec
    if known.servers:
        raise ServerUnavailable(
            f"no server in {known.source} has a REST address; pass --server HOST:PORT with --rest"
        )
    raise ServerUnavailable(
        "no server is known: start one with `mlc serve`, list yours in configs/servers.yaml, "
        "or pass --server HOST:PORT"
    )
