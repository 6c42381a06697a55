"""What a request to a served model asks for: the model, a version or label, the signature.

Read from ``configs/<model>.yaml`` when the home defines the model; a model this home does not
define is asked with the classic DeepLab contract (``predict_images`` -> ``segmentation_map``,
21 VOC classes). Below both :mod:`lifecycle.predictions.predict` (Predict, segmentation) and
:mod:`lifecycle.predictions.classify` (Classify), which build their requests from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lifecycle.store.config import Paths, load_definition

CLASSIC_SIGNATURE = "predict_images"
CLASSIC_OUTPUT = "segmentation_map"
CLASSIC_NUM_CLASSES = 21


@dataclass(frozen=True)
class RequestTarget:
    """What a request asks for: model, version or label, the signature and its output."""

    model: str
    version: int | None = None
    label: str | None = None
    signature: str = CLASSIC_SIGNATURE
    output: str = CLASSIC_OUTPUT
    num_classes: int = CLASSIC_NUM_CLASSES
    classes: tuple[str, ...] = ()  # a classifier's class names: asked through the Classify API

    def describe(self) -> str:
        """``version 3``, ``label stable`` or ``latest``, as people read it."""
        if self.version is not None:
            return f"version {self.version}"
        if self.label is not None:
            return f"label {self.label}"
        return "latest"


def request_target(paths: Paths, model: str, version: int | None, label: str | None) -> RequestTarget:
    """The request target: signature and output from configs/<model>.yaml, else the classic contract."""
    if not paths.definition_file(model).exists():
        return RequestTarget(model, version, label)
    definition = load_definition(paths, model)
    classify = definition.contract("tensorflow/serving/classify")
    if definition.task == "classification" and classify is not None:  # asked through the Classify API
        classes = tuple(definition.classes)
        return RequestTarget(model, version, label, classify.key, "scores", len(classes), classes)
    output = definition.signature.outputs[0].name
    num_classes = int(definition.network.get("num_classes", 21))
    return RequestTarget(model, version, label, definition.signature.key, output, num_classes)
