"""What a model's outputs mean, and how a version is judged: segmentation or classification.

A task turns the test image into the request its primary signature takes, checks the answer,
compares it with the checkpoint model's, and scores the export on the evaluation set:

- :class:`Segmentation`: the classic ``predict_images`` contract (``images`` float32 [N,H,W,3],
  ``height``/``width`` int32 [1]) answering a class-id map [N,H,W]; scored by mIoU, per-class
  IoU and pixel accuracy (VOC's 255 pixels left out).
- :class:`Classification`: a Predict signature taking ``images`` float32 [N,H,W,3] and answering
  ``scores`` float32 [N,C] (plus, usually, an int32 top-1 ``class_ids`` [N]), and a Classify
  signature over serialized ``tf.Example`` whose ``image/encoded`` feature holds the encoded
  image (TF Serving's Classify API: ``classes`` and ``scores`` [N,C]). Scored by accuracy and
  top-5 accuracy. The round trip also sends the test image through the Classify signature as a
  ``ClassificationRequest`` and insists that both signatures agree on its class.

TensorFlow is imported inside the methods that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lifecycle.errors import ConfigError, LifecycleError, ValidationFailed
from lifecycle.register import evalsets, metrics
from lifecycle.store.config import CLASSIFICATION, ModelDefinition, SignatureContract

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
EXAMPLE_FEATURE = "image/encoded"

# How validation hands the loaded export to a task: run(signature key, inputs) -> outputs (raises
# LifecycleError), and answer(inputs, output names) -> those outputs of the primary signature.
Runner = Callable[[str, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
Answer = Callable[[Mapping[str, np.ndarray], list[str]], Mapping[str, np.ndarray]]


def _eval_batch(contract: SignatureContract) -> int:
    images = next((t for t in contract.inputs if t.name == "images"), None)
    return 1 if images is not None and images.shape and images.shape[0] == 1 else 8


class Segmentation:
    """A class-id map per pixel (the DeepLab ``predict_images`` contract)."""

    name = "segmentation"
    primary_metric = "miou"

    def __init__(self, definition: ModelDefinition, class_names: list[str]) -> None:
        self.contract = definition.signature
        where = f"model definition {definition.path}"
        if self.contract.method != PREDICT or {t.name for t in self.contract.inputs} != {"images", "height", "width"}:
            raise ConfigError(f"{where}: a segmentation model needs a predict signature with inputs images, height "
                              f"and width; {self.contract.key!r} is not one")
        self.output = self.contract.outputs[0].name
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.batch = _eval_batch(self.contract)

    def request(self, model: str, image: np.ndarray) -> Any:
        """The PredictRequest a client sends for one image."""
        from lifecycle.register.probe import predict_request

        return predict_request(model, self.contract.key, image)

    def check_output(self, out: np.ndarray, image: np.ndarray) -> None:
        """[1,H,W] int32 with values in [0, num_classes)."""
        from lifecycle.register.validate import check_segmentation_map

        check_segmentation_map(out, image.shape[0], image.shape[1], self.num_classes)

    def extra_round_trip(self, run: Runner, image_path: Any, out: np.ndarray) -> str | None:
        """Nothing beyond the primary signature."""
        return None

    def check_parity(self, out: np.ndarray, reference: np.ndarray, outputs: Mapping[str, Any] | None = None,
                     ref_outputs: Mapping[str, Any] | None = None) -> str:
        """Equal to the checkpoint model's mask, pixel for pixel."""
        from lifecycle.register.validate import check_parity

        check_parity(out, reference)
        return f"equal to the checkpoint model's mask in all {out.size} pixels"

    def golden_extra(self, out: np.ndarray) -> dict[str, Any]:
        """The class histogram of the test mask."""
        return {"histogram": metrics.class_histogram(out, self.class_names)}

    def evaluate(self, answer: Answer, data: evalsets.EvalSet) -> dict[str, Any]:
        """mIoU, per-class IoU and pixel accuracy over the evaluation set."""
        confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        for idx, batch in data.batches(self.batch):
            h, w = batch.shape[1:3]
            pred = np.asarray(answer({"images": batch, "height": np.array([h], np.int32),
                                      "width": np.array([w], np.int32)}, [self.output])[self.output])
            for j, i in enumerate(idx):
                confusion += metrics.segmentation_confusion(np.asarray(data.labels[i]), pred[j], self.num_classes)
        return metrics.segmentation_metrics(confusion, self.class_names)

    def summary(self, scores: Mapping[str, Any], count: int) -> str:
        """The metrics check's one line."""
        return f"mIoU {scores['miou']:.4f} on {count} evaluation images"


class Classification:
    """A class per image: a Predict signature over pixels and a Classify signature over tf.Example."""

    name = "classification"
    primary_metric = "accuracy"

    def __init__(self, definition: ModelDefinition, class_names: list[str]) -> None:
        where = f"model definition {definition.path}"
        self.contract = definition.signature
        if self.contract.method != PREDICT or [t.name for t in self.contract.inputs] != ["images"]:
            raise ConfigError(f"{where}: a classification model's first signature must be a predict signature with "
                              f"the one input 'images' (float32 [-1,-1,-1,3]); {self.contract.key!r} is not one")
        outputs = {t.name: t for t in self.contract.outputs}
        if "scores" not in outputs or outputs["scores"].dtype != "float32":
            raise ConfigError(f"{where}: predict signature {self.contract.key!r} needs a float32 output 'scores'")
        ints = [t.name for t in self.contract.outputs if t.dtype.startswith("int")]
        self.output = ints[0] if ints else "scores"  # the golden digest: top-1 ids are stable across loaders
        self.classify = definition.contract(CLASSIFY)
        if not class_names:
            raise ConfigError(f"{where}: a classification model needs 'classes' (the class names, in score order)")
        self.class_names = class_names
        self.batch = _eval_batch(self.contract)

    def request(self, model: str, image: np.ndarray) -> Any:
        """A PredictRequest with ``images`` float32 [1,H,W,3] built with ``tf.make_tensor_proto``."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        req.model_spec.signature_name = self.contract.key
        req.inputs["images"].CopyFrom(tf.make_tensor_proto(image[None].astype(np.float32), dtype=tf.float32))
        return req

    def check_output(self, out: np.ndarray, image: np.ndarray) -> None:
        """Top-1 ids [1] in [0, C), or scores [1, C]."""
        n = len(self.class_names)
        if self.output == "scores":
            if out.shape != (1, n) or out.dtype != np.float32:
                raise ValidationFailed(f"scores is {out.dtype} {list(out.shape)}, expected float32 [1, {n}]",
                                       check="round_trip")
            return
        if out.shape != (1,) or not np.issubdtype(out.dtype, np.integer) or not 0 <= int(out[0]) < n:
            raise ValidationFailed(f"{self.output} is {out.dtype} {list(out.shape)} = {out.tolist()}, expected "
                                   f"one class id in [0, {n})", check="round_trip")

    def top1(self, out: np.ndarray) -> int:
        return int(np.argmax(out[0])) if self.output == "scores" else int(out[0])

    def extra_round_trip(self, run: Runner, image_path: Any, out: np.ndarray) -> str | None:
        """The test image as a ClassificationRequest through the Classify signature: same class as Predict."""
        if self.classify is None:
            return None
        import tensorflow as tf
        from tensorflow_serving.apis import classification_pb2

        example = tf.train.Example()
        example.features.feature[EXAMPLE_FEATURE].bytes_list.value.append(image_path.read_bytes())
        req = classification_pb2.ClassificationRequest()
        req.model_spec.signature_name = self.classify.key
        req.input.example_list.examples.add().CopyFrom(example)
        parsed = classification_pb2.ClassificationRequest.FromString(req.SerializeToString())
        serialized = [e.SerializeToString() for e in parsed.input.example_list.examples]
        try:
            result = run(self.classify.key, {"inputs": np.array(serialized, dtype=object)})
        except LifecycleError as e:
            raise ValidationFailed(f"the classify signature {self.classify.key!r} did not answer the test "
                                   f"example: {str(e).splitlines()[0]}", check="round_trip") from e
        n = len(self.class_names)
        scores = result.get("scores")
        if scores is None or scores.shape != (1, n):
            raise ValidationFailed(f"the classify signature answered scores {None if scores is None else list(scores.shape)}, "
                                   f"expected [1, {n}]", check="round_trip")
        if "classes" in result:
            classes = [c.decode() for c in result["classes"][0]]
            if sorted(classes) != sorted(self.class_names):
                raise ValidationFailed(f"the classify signature's classes are {classes}, not the definition's "
                                       f"{list(self.class_names)}", check="round_trip")
            best = classes[int(np.argmax(scores[0]))]
        else:
            best = self.class_names[int(np.argmax(scores[0]))]
        predicted = self.class_names[self.top1(out)]
        if best != predicted:
            raise ValidationFailed(f"the classify signature says {best!r} for the test image, the predict "
                                   f"signature {predicted!r}", check="round_trip")
        return f"ClassificationRequest (tf.Example {EXAMPLE_FEATURE}) through {self.classify.key!r}: {best!r}, as Predict"

    def check_parity(self, out: np.ndarray, reference: np.ndarray, outputs: Mapping[str, Any] | None = None,
                     ref_outputs: Mapping[str, Any] | None = None) -> str:
        """Same top-1 class and scores within 1e-4 of the checkpoint model's."""
        if not np.array_equal(out, reference) and self.output != "scores":
            raise ValidationFailed(f"the export answers {self.output} {out.tolist()}, the checkpoint model "
                                   f"{reference.tolist()}", check="parity")
        a = np.asarray((outputs or {}).get("scores", out), np.float64)
        b = np.asarray((ref_outputs or {}).get("scores", reference), np.float64)
        worst = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
        if worst > 1e-4:
            raise ValidationFailed(f"the export's scores differ from the checkpoint model's by up to {worst:.3g}",
                                   check="parity")
        return f"same class as the checkpoint model, scores within {worst:.1e}"

    def golden_extra(self, out: np.ndarray) -> dict[str, Any]:
        return {"class": self.class_names[self.top1(out)]}

    def evaluate(self, answer: Answer, data: evalsets.EvalSet) -> dict[str, Any]:
        """Accuracy, top-5 accuracy and per-class accuracy over the evaluation set."""
        scores = np.zeros((len(data), len(self.class_names)), np.float32)
        for idx, batch in data.batches(self.batch):
            scores[idx] = answer({"images": batch}, ["scores"])["scores"]
        return metrics.classification_metrics(np.asarray(data.labels), scores, self.class_names)

    def summary(self, scores: Mapping[str, Any], count: int) -> str:
        """The metrics check's one line."""
        k = scores["top_k"]
        return f"accuracy {scores['accuracy']:.4f} (top-{k} {scores[f'top{k}_accuracy']:.4f}) on {count} evaluation images"


def class_names(definition: ModelDefinition) -> list[str]:
    """The definition's class names, else VOC's names for ``network.num_classes`` (21 by default)."""
    if definition.classes:
        return list(definition.classes)
    from lifecycle.networks.voc import class_name

    n = int(definition.network.get("num_classes", 21))
    return [class_name(i, n) for i in range(n)]


def for_definition(definition: ModelDefinition) -> Segmentation | Classification:
    """The task of a model definition."""
    names = class_names(definition)
    return Classification(definition, names) if definition.task == CLASSIFICATION else Segmentation(definition, names)
