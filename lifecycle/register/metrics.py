"""Scores of a version on its evaluation set, and of two versions against each other (no TensorFlow).

- segmentation: a confusion matrix over pixels (ground truth rows, predictions columns; VOC's
  255 "void" pixels left out), mIoU over the classes that occur, per-class IoU, pixel accuracy;
  the class histogram of one mask (the golden record);
- classification: top-1 accuracy, top-k accuracy (k = 5, or the number of classes if fewer) and
  per-class accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

IGNORE = 255  # VOC's "void" label: borders and difficult pixels, left out of every score


def class_histogram(mask: np.ndarray, names: list[str]) -> dict[str, int]:
    """Pixel count per class name, for the classes present, in class-id order."""
    counts = np.bincount(mask.ravel(), minlength=len(names))
    return {names[i]: int(c) for i, c in enumerate(counts) if c}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts: rows are ground truth, columns predictions."""
    idx = labels.astype(np.int64).ravel() * num_classes + predictions.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_metrics(confusion: np.ndarray, names: list[str]) -> dict[str, Any]:
    """mIoU over the classes that occur (in truth or prediction), per-class IoU, pixel accuracy."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    iou = np.where(present, tp / np.maximum(union, 1), 0.0)
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "per_class_iou": {names[i]: round(float(iou[i]), 6) for i in np.flatnonzero(present)},
        "pixel_accuracy": float(tp.sum() / max(confusion.sum(), 1)),
    }


# --- scores --------------------------------------------------------------------------------


def segmentation_confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts over the pixels whose label is not 255 (ignore)."""
    keep = labels != IGNORE
    idx = labels[keep].astype(np.int64) * num_classes + np.clip(predictions[keep].astype(np.int64), 0, num_classes - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(labels: np.ndarray, scores: np.ndarray, class_names: list[str], k: int = 5) -> dict[str, Any]:
    """Top-1 accuracy, top-k accuracy (k = 5, or the number of classes if fewer) and per-class accuracy."""
    k = min(k, scores.shape[1])
    ranked = np.argsort(-scores, axis=1, kind="stable")
    top1 = ranked[:, 0] == labels
    topk = (ranked[:, :k] == labels[:, None]).any(axis=1)
    per_class = {class_names[c]: round(float(top1[labels == c].mean()), 6) for c in np.unique(labels)}
    return {"accuracy": float(top1.mean()), f"top{k}_accuracy": float(topk.mean()), "top_k": k,
            "per_class_accuracy": per_class}
