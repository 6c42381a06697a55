"""How the candidate's answer agrees with stable's on the same request, by the model's task.

- segmentation: the share of pixels with the same class (pixel agreement) and the mean IoU of
  the class masks either answer has; logits (a float map with a class axis last) are argmax'ed;
- classification: the share of rows whose top-1 class is the same (scores are argmax'ed, class
  ids compared as they are);
- generic: 1 if every compared output is exactly equal, else 0, and the largest absolute
  difference of the numeric ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lifecycle.errors import InvalidArgument

_SEGMENTATION_OUTPUTS = ("segmentation_map", "classes")
_CLASSIFICATION_OUTPUTS = ("classes", "scores", "probabilities")


@dataclass(frozen=True)
class Agreement:
    """One comparison: agreement in [0, 1], mask IoU (segmentation) and max abs diff (generic)."""

    agreement: float
    iou: float | None = None
    max_abs_diff: float | None = None


def compare(kind: str, output: str, stable: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> Agreement:
    """Compare two answers of the same request as the model's task says."""
    if kind == "segmentation":
        name = _pick(output, stable, _SEGMENTATION_OUTPUTS)
        return segmentation_agreement(stable[name], _output(candidate, name))
    if kind == "classification":
        name = _pick(output, stable, _CLASSIFICATION_OUTPUTS)
        return classification_agreement(stable[name], _output(candidate, name))
    names = [output] if output else sorted(set(stable) | set(candidate))
    return generic_agreement({n: _output(stable, n) for n in names}, {n: candidate.get(n) for n in names})


def _pick(output: str, answer: Mapping[str, np.ndarray], preferred: tuple[str, ...]) -> str:
    if output:
        _output(answer, output)
        return output
    if len(answer) == 1:
        return next(iter(answer))
    for name in preferred:
        if name in answer:
            return name
    raise InvalidArgument(f"the answer has outputs {', '.join(sorted(answer))}: name the one to compare (compare.output)")


def _output(answer: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in answer:
        raise InvalidArgument(f"the answer has no output {name!r}")
    return answer[name]


def _labels(values: np.ndarray, class_axis_from: int) -> np.ndarray:
    """Class ids: a float array with at least ``class_axis_from`` axes is argmax'ed on its last."""
    if np.issubdtype(values.dtype, np.floating) and values.ndim >= class_axis_from:
        return np.argmax(values, axis=-1)
    return values


def segmentation_agreement(stable: np.ndarray, candidate: np.ndarray) -> Agreement:
    """Pixel agreement and mean mask IoU of two segmentation maps (or logits, class axis last)."""
    a, b = _labels(stable, 4), _labels(candidate, 4)
    if a.shape != b.shape or a.size == 0:
        return Agreement(0.0, 0.0)
    same = a == b
    ious = []
    for value in np.union1d(a, b):
        in_a, in_b = a == value, b == value
        ious.append(np.count_nonzero(in_a & in_b) / np.count_nonzero(in_a | in_b))
    return Agreement(float(np.count_nonzero(same)) / same.size, float(np.mean(ious)))


def classification_agreement(stable: np.ndarray, candidate: np.ndarray) -> Agreement:
    """The share of rows (first axis) with the same top-1 class."""
    a, b = _labels(stable, 2), _labels(candidate, 2)
    if a.shape != b.shape or a.size == 0:
        return Agreement(0.0)
    rows = max(1, a.shape[0]) if a.ndim else 1
    same = np.all(a.reshape(rows, -1) == b.reshape(rows, -1), axis=1)
    return Agreement(float(np.count_nonzero(same)) / rows)


def generic_agreement(stable: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray | None]) -> Agreement:
    """1 if every output is exactly equal (else 0), and the largest absolute difference."""
    equal = True
    largest = 0.0
    for name, a in stable.items():
        b = candidate.get(name)
        if b is None or a.shape != b.shape or a.dtype != b.dtype:
            equal = False  # different shapes have no difference to measure: agreement says it
            continue
        if not np.array_equal(a, b):
            equal = False
        if a.size and (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            largest = max(largest, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return Agreement(1.0 if equal else 0.0, max_abs_diff=largest)
