"""Asking a served classifier, and telling two classifier versions apart.

``mlc predict`` on a classification model sends each photo through TF Serving's Classify API:
a ``ClassificationRequest`` whose one ``tf.Example`` carries the photo, PNG-encoded, in the
``image/encoded`` feature, over gRPC (synchronously with a deadline, or through
``Classify.future``) or as REST ``:classify`` (``{"examples": [{"image/encoded": {"b64": ...}}]}``).
The answer is the model's (class, score) pairs; the report is its top k.

``mlc diff`` on a classification model loads both versions in-process with the server's loader
(as for segmentation, see :mod:`lifecycle.predictions.diff`) and runs their Predict signature on
the test image, the extra photos and the evaluation set: the top-1 agreement of B with A, which
images changed class, and each version's accuracy against the set's labels.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.errors import ResponseMismatch
from lifecycle.predictions.target import RequestTarget
from lifecycle.serving.client import answered_version

if TYPE_CHECKING:  # pragma: no cover
    from lifecycle.serving.client import ServingClient

EXAMPLE_FEATURE = "image/encoded"
TOP_K = 5


@dataclass(frozen=True)
class ClassAnswer:
    """One photo's classes, best first, and the version that answered."""

    scores: list[tuple[str, float]]
    version: int | None


def png_bytes(photo: np.ndarray) -> bytes:
    """A uint8 RGB photo [H, W, 3] as PNG bytes (what the ``image/encoded`` feature carries)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(photo.astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def request(target: RequestTarget, photo: np.ndarray) -> Any:
    """The ClassificationRequest for one photo."""
    from tensorflow_serving.apis import classification_pb2

    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = target.model
    req.model_spec.signature_name = target.signature
    if target.version is not None:
        req.model_spec.version.value = target.version
    elif target.label is not None:
        req.model_spec.version_label = target.label
    example = req.input.example_list.examples.add()
    example.features.feature[EXAMPLE_FEATURE].bytes_list.value.append(png_bytes(photo))
    return req


def _ranked(pairs: list[tuple[str, float]], where: str, classes: list[str]) -> list[tuple[str, float]]:
    if classes and sorted(c for c, _ in pairs) != sorted(classes):
        raise ResponseMismatch(f"{where} answered classes {[c for c, _ in pairs]}, not the model's {classes}")
    return sorted(pairs, key=lambda p: -p[1])[:TOP_K]


def classify_grpc(client: ServingClient, target: RequestTarget, photos: list[np.ndarray], timeout: float,
                  use_async: bool, classes: list[str]) -> list[ClassAnswer]:
    """Classify every photo over gRPC: one after another, or all at once through ``Classify.future``."""
    where = f"server {client.grpc_address}"
    responses = client.call_all("Classify", [request(target, p) for p in photos], timeout, use_async)
    answers = []
    for response in responses:
        if len(response.result.classifications) != 1:
            raise ResponseMismatch(f"{where} answered {len(response.result.classifications)} classifications for one example")
        pairs = [(c.label, float(c.score)) for c in response.result.classifications[0].classes]
        answers.append(ClassAnswer(_ranked(pairs, where, classes), answered_version(response)))
    return answers


def classify_rest(client: ServingClient, target: RequestTarget, photos: list[np.ndarray], timeout: float,
                  classes: list[str]) -> list[ClassAnswer]:
    """Classify every photo with ``POST /v1/models/<m>[...]:classify`` (the image base64-encoded)."""
    where = f"server {client.rest_address} (REST)"
    answers = []
    for photo in photos:
        body = {"signature_name": target.signature,
                "examples": [{EXAMPLE_FEATURE: {"b64": base64.b64encode(png_bytes(photo)).decode()}}]}
        answer = client.predict_rest(target.model, body, version=target.version, label=target.label,
                                     timeout=timeout, verb="classify")
        results = answer.get("results")
        if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], list):
            raise ResponseMismatch(f"{where} answered without one list of (class, score) 'results'")
        try:
            pairs = [(str(c), float(s)) for c, s in results[0]]
        except (TypeError, ValueError) as e:
            raise ResponseMismatch(f"{where} answered results that are not (class, score) pairs") from e
        answers.append(ClassAnswer(_ranked(pairs, where, classes), None))
    version = target.version if target.version is not None else client.serving_version(
        target.model, label=target.label, timeout=timeout)
    return [ClassAnswer(a.scores, version) for a in answers]


# --- diff ----------------------------------------------------------------------------------


@dataclass
class ImageClasses:
    """What A and B say about one photo."""

    image: str
    a: list[tuple[str, float]]
    b: list[tuple[str, float]]

    @property
    def agree(self) -> bool:
        """Whether A and B rank the same class first."""
        return self.a[0][0] == self.b[0][0]


class LoadedClassifier:
    """One published classifier version loaded with the server's loader, answering its Predict signature."""

    def __init__(self, model: str, version: int, path: Path, signature: str) -> None:
        from lifecycle.server.models.loader import Servable

        self.signature = signature
        self.servable = Servable(model, version, path, ["serve"])

    def scores(self, images: list[np.ndarray], batch: int = 16) -> np.ndarray:
        """Scores [N, C] for float32 RGB images (any sizes) in [0, 255]."""
        out = []
        for image in images:  # images may differ in size: one at a time keeps it simple and exact
            result = self.servable.run(self.signature, {"images": image[None].astype(np.float32)},
                                       output_filter=["scores"])
            out.append(np.asarray(result["scores"])[0])
        return np.stack(out) if out else np.zeros((0, 0), np.float32)

    def close(self) -> None:
        """Unload the version."""
        self.servable.close()


def top(scores: np.ndarray, classes: list[str], k: int = TOP_K) -> list[tuple[str, float]]:
    """The k best (class, score) pairs of one score vector."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [(classes[i], round(float(scores[i]), 6)) for i in order]


def classify_photos(target: RequestTarget, photos: list[np.ndarray], client: ServingClient, rest: bool,
                    use_async: bool, timeout: float) -> list[ClassAnswer]:
    """``mlc predict`` on a classifier: every photo through the Classify API (gRPC or REST)."""
    classes = list(target.classes)
    if rest:
        return classify_rest(client, target, photos, timeout, classes)
    return classify_grpc(client, target, photos, timeout, use_async, classes)


@dataclass
class ClassDiff:
    """How classifier B compares with A: on each photo, and on the evaluation set."""

    images: list[dict[str, Any]]  # {"image", "a": [[class, score], ...], "b": [...], "agree"}
    eval_images: int
    agreement: float  # share of evaluation images where B's top class equals A's
    changed_count: int
    changed: list[str]  # the first of those images (ids), B's class differing from A's
    accuracy_a: float
    accuracy_b: float
    top5_a: float
    top5_b: float

    @property
    def identical(self) -> bool:
        """The same class for every photo and every evaluation image."""
        return all(i["agree"] for i in self.images) and not self.changed_count


def compare_classifiers(definition: Any, settings: Any, model: str, a: tuple[int, Path], b: tuple[int, Path],
                        photo_paths: list[Path], photos: list[np.ndarray]) -> ClassDiff:
    """Classifier A against B: top classes on each photo, agreement and accuracy on the evaluation set."""
    from lifecycle.register import evalsets, metrics

    classes = list(definition.classes)
    data = evalsets.load(settings.eval, settings.eval_root, classes)
    key = definition.signature.key
    va, vb = LoadedClassifier(model, a[0], a[1], key), LoadedClassifier(model, b[0], b[1], key)
    try:
        inputs = [p.astype(np.float32) for p in photos]
        photo_a, photo_b = va.scores(inputs), vb.scores(inputs)
        eval_a, eval_b = va.scores(data.images), vb.scores(data.images)
    finally:
        va.close()
        vb.close()
    per_image = []
    for path, sa, sb in zip(photo_paths, photo_a, photo_b, strict=True):
        ta, tb = top(sa, classes), top(sb, classes)
        per_image.append({"image": str(path), "a": ta, "b": tb, "agree": ta[0][0] == tb[0][0]})
    differ = np.flatnonzero(eval_a.argmax(1) != eval_b.argmax(1))
    labels = np.asarray(data.labels)
    ma = metrics.classification_metrics(labels, eval_a, classes)
    mb = metrics.classification_metrics(labels, eval_b, classes)
    k = ma["top_k"]
    return ClassDiff(per_image, len(data), float(1 - len(differ) / max(len(data), 1)), len(differ),
                     [data.ids[i] for i in differ[:20]], ma["accuracy"], mb["accuracy"],
                     ma[f"top{k}_accuracy"], mb[f"top{k}_accuracy"])
