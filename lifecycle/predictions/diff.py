"""Telling two versions of a model apart: their signatures, and their outputs on the same images.

Signatures are compared as the plain data :func:`lifecycle.register.validate.read_signatures` reads from
each ``saved_model.pb``: a signature, input or output can be added, removed or changed (dtype,
shape, method name).

Outputs are compared with version A as the reference: **pixel agreement** is the share of pixels
where B's class equals A's, and **mIoU of B against A** is the mean IoU over the classes either
version predicts, computed with the same confusion-matrix code as the evaluation mIoU
(:mod:`lifecycle.register.validate`).

Both versions are loaded in this process straight from ``model_repo/<model>/<N>/`` with the
loader the embedded server uses (:class:`lifecycle.server.models.loader.Servable`). A diff is made
before a promote, when B is usually on no server at all; loading it onto a production server
would take a config reload, which is promote's job, and would put B in the path of
unversioned traffic (see DESIGN.md). Loading from disk compares exactly the published bytes,
needs no running server, and runs them as TF Serving would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lifecycle import progress
from lifecycle.errors import UsageError
from lifecycle.predictions.classify import ClassDiff, compare_classifiers
from lifecycle.register.metrics import confusion_matrix, segmentation_confusion, segmentation_metrics
from lifecycle.rollout import compatibility
from lifecycle.store import registry
from lifecycle.store.config import Paths, load_definition, validation_settings


@dataclass(frozen=True)
class SignatureChange:
    """One difference between the signatures of A and B."""

    change: str  # added | removed | changed
    signature: str
    part: str  # signature | method | input | output
    name: str
    a: str | None  # A's spec as people read it ("float32 [-1, -1, -1, 3]"), None if absent
    b: str | None

    def describe(self) -> str:
        """One line, e.g. ``changed output 'segmentation_map' of 'predict_images': int32 [..] -> int64 [..]``."""
        what = f"{self.part} {self.name!r}" + ("" if self.part == "signature" else f" of {self.signature!r}")
        if self.change == "added":
            return f"added {what}: {self.b}"
        if self.change == "removed":
            return f"removed {what}: {self.a}"
        return f"changed {what}: {self.a} -> {self.b}"


def _spec(spec: dict[str, Any]) -> str:
    shape = "unknown rank" if spec.get("shape") is None else str(list(spec["shape"]))
    return f"{spec['dtype']} {shape}"


def signature_changes(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[SignatureChange]:
    """Every added, removed or changed signature, method, input and output from A to B."""
    changes: list[SignatureChange] = []
    for key in sorted(set(a) | set(b)):
        sa, sb = a.get(key), b.get(key)
        if sa is None or sb is None:
            present = b[key] if sa is None else sa
            summary = f"{present['method']} ({', '.join(present['inputs'])} -> {', '.join(present['outputs'])})"
            changes.append(
                SignatureChange("added" if sa is None else "removed", key, "signature", key,
                                None if sa is None else summary, None if sb is None else summary)
            )
            continue
        if sa["method"] != sb["method"]:
            changes.append(SignatureChange("changed", key, "method", sa["method"], sa["method"], sb["method"]))
        for side in ("inputs", "outputs"):
            for name in sorted(set(sa[side]) | set(sb[side])):
                ta, tb = sa[side].get(name), sb[side].get(name)
                if ta == tb:
                    continue
                change = "added" if ta is None else "removed" if tb is None else "changed"
                changes.append(
                    SignatureChange(change, key, side[:-1], name,
                                    None if ta is None else _spec(ta), None if tb is None else _spec(tb))
                )
    return changes


@dataclass(frozen=True)
class Agreement:
    """How far B's masks agree with A's on some images."""

    pixels: int
    agreement: float  # share of pixels where B's class equals A's
    miou: float  # mean IoU of B against A over the classes either predicts
    differing: int


def agreement(masks_a: np.ndarray, masks_b: np.ndarray, num_classes: int, class_names: list[str]) -> Agreement:
    """Pixel agreement and mIoU of B's class maps against A's (same shapes)."""
    if masks_a.shape != masks_b.shape:
        raise ValueError(f"masks differ in shape: {list(masks_a.shape)} vs {list(masks_b.shape)}")
    n = max(num_classes, int(max(masks_a.max(initial=0), masks_b.max(initial=0))) + 1)
    names = class_names + [f"class_{i}" for i in range(len(class_names), n)]
    metrics = segmentation_metrics(confusion_matrix(masks_a, masks_b, n), names)
    differing = int(np.count_nonzero(masks_a != masks_b))
    return Agreement(int(masks_a.size), float(metrics["pixel_accuracy"]), float(metrics["miou"]), differing)


def miou_against_truth(labels: np.ndarray, masks: np.ndarray, num_classes: int, class_names: list[str]) -> float:
    """mIoU of class maps against ground-truth labels (the evaluation metric; 255 = ignore)."""
    return float(segmentation_metrics(segmentation_confusion(labels, masks, num_classes), class_names)["miou"])


EVAL_BATCH = 8  # images per run: a ResNet-50 DeepLab on a large evaluation set would not fit at once


class LoadedVersion:
    """One published version loaded with the server's loader, answering the segmentation signature."""

    def __init__(self, model: str, version: int, path: Path, signature: str, output: str) -> None:
        from lifecycle.server.models.loader import Servable

        self.version = version
        self.signature = signature
        self.output = output
        self.servable = Servable(model, version, path, ["serve"])

    def segment(self, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
        """Class maps [N, H, W] for float32 RGB images [N, H, W, 3] in [0, 255], ``batch`` at a time."""
        if len(images) > batch:
            return np.concatenate([self.segment(images[i:i + batch], batch) for i in range(0, len(images), batch)])
        h, w = images.shape[1:3]
        outputs = self.servable.run(
            self.signature,
            {"images": images.astype(np.float32), "height": np.array([h], np.int32), "width": np.array([w], np.int32)},
            output_filter=[self.output],
        )
        return np.asarray(outputs[self.output]).astype(np.int32)

    def close(self) -> None:
        """Free the session."""
        self.servable.close()


@contextmanager
def loaded(model: str, version: int, path: Path, signature: str, output: str) -> Iterator[LoadedVersion]:
    """A version loaded for the duration of a ``with`` block."""
    v = LoadedVersion(model, version, path, signature, output)
    try:
        yield v
    finally:
        v.close()


# --- mlc diff -------------------------------------------------------------------------------


@dataclass
class ImageDiff:
    """How B's mask of one image compares with A's."""

    image: str
    width: int
    height: int
    agreement: float
    miou: float
    differing_pixels: int
    picture: str


@dataclass
class EvalDiff:
    """How B compares with A on the evaluation set, and each against the ground truth."""

    images: int
    size: int
    agreement: float
    miou: float
    differing_pixels: int
    miou_a: float
    miou_b: float


@dataclass
class DiffResult:
    """The result of ``mlc diff``."""

    model: str
    a: int
    b: int
    signature_changes: list[dict[str, Any]]
    images: list[ImageDiff]
    eval: EvalDiff | None
    classification: ClassDiff | None = None  # a classifier's diff (then images is empty and eval None)
    # The signature gate's verdict with A as stable and B as the candidate (rollout.compatibility).
    compatibility: dict[str, Any] | None = None

    @property
    def identical(self) -> bool:
        """Same signatures and the same mask in every pixel (a classifier: the same class for every image)."""
        return not self.signature_changes and all(i.differing_pixels == 0 for i in self.images) and (
            self.eval is None or self.eval.differing_pixels == 0
        ) and (self.classification is None or self.classification.identical)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {**asdict(self), "identical": self.identical}


def compare_versions(
    paths: Paths, model: str, a: int, b: int, images: list[str | Path] | None = None, out: str | Path = "."
) -> DiffResult:
    """``mlc diff``: signatures, and masks on the test image, ``images`` and the evaluation set.

    Writes ``<model>-<A>-vs-<B>.<image>.png`` (photo | mask A | mask B | disagreement) into ``out``
    for each image.
    """
    definition = load_definition(paths, model)
    record = registry.load(paths).model(model)
    record.version(a)  # VersionNotFound names the registered versions
    record.version(b)
    settings = validation_settings(definition)
    photo_paths = [settings.test_image, *(Path(p) for p in images or [])]
    stems = [p.name.rsplit(".", 1)[0] for p in photo_paths]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise UsageError(f"several images are named {clash[0]}; their pictures would overwrite each other")

    from lifecycle.predictions import pictures
    from lifecycle.register import evalsets, tasks
    from lifecycle.register.validate import read_signatures  # TensorFlow from here on

    progress.step(f"reading the signatures of versions {a} and {b}")
    photos = [pictures.read_photo(p) for p in photo_paths]
    dir_a, dir_b = paths.store.version_path(model, a), paths.store.version_path(model, b)
    sigs_a, sigs_b = read_signatures(dir_a), read_signatures(dir_b)
    changes = [asdict(c) | {"description": c.describe()} for c in signature_changes(sigs_a, sigs_b)]
    verdict = compatibility.compare(sigs_a, sigs_b, a, b).to_dict()
    if definition.task == "classification":
        compared = compare_classifiers(definition, settings, model, (a, dir_a), (b, dir_b), photo_paths, photos)
        return DiffResult(model, a, b, changes, [], None, compared, verdict)
    names = tasks.class_names(definition)
    num_classes = len(names)
    key, output = definition.signature.key, definition.signature.outputs[0].name
    data = evalsets.load(settings.eval, settings.eval_root, names)

    folder = Path(out)
    image_diffs = []
    progress.step(f"loading versions {a} and {b}")
    with loaded(model, a, dir_a, key, output) as va, loaded(model, b, dir_b, key, output) as vb:
        for path, stem, photo in zip(photo_paths, stems, photos, strict=True):
            progress.step(f"comparing the masks on {path.name}")
            batch = photo[None].astype(np.float32)
            mask_a, mask_b = va.segment(batch)[0], vb.segment(batch)[0]
            agree = agreement(mask_a, mask_b, num_classes, names)
            picture = pictures.write_png(folder / f"{model}-{a}-vs-{b}.{stem}.png",
                                         pictures.diff_picture(photo, mask_a, mask_b, a, b, names))
            image_diffs.append(
                ImageDiff(str(path), int(photo.shape[1]), int(photo.shape[0]), agree.agreement, agree.miou,
                          agree.differing, str(picture))
            )
        progress.step(f"comparing the masks on the evaluation set ({len(data)} images)")
        groups = list(data.batches(EVAL_BATCH))  # same-sized images together (VOC photos vary)
        masks_a = np.concatenate([va.segment(batch).reshape(-1) for _, batch in groups])
        masks_b = np.concatenate([vb.segment(batch).reshape(-1) for _, batch in groups])
    truth = np.concatenate([np.asarray(data.labels[i]).reshape(-1) for idx, _ in groups for i in idx])
    agree = agreement(masks_a, masks_b, num_classes, names)
    eval_diff = EvalDiff(
        images=len(data), size=int(data.images[0].shape[0]), agreement=agree.agreement, miou=agree.miou,
        differing_pixels=agree.differing,
        miou_a=miou_against_truth(truth, masks_a, num_classes, names),
        miou_b=miou_against_truth(truth, masks_b, num_classes, names),
    )
    return DiffResult(model, a, b, changes, image_diffs, eval_diff, compatibility=verdict)
