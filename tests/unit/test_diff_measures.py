"""mlc diff's measures without a model: signature comparison and mask agreement."""

from __future__ import annotations

import numpy as np
import pytest

from lifecycle.predictions.diff import agreement, signature_changes


def sig(inputs: dict, outputs: dict, method: str = "tensorflow/serving/predict") -> dict:
    return {"method": method, "inputs": inputs, "outputs": outputs}


IMAGES = {"dtype": "float32", "shape": [-1, -1, -1, 3]}
SIZE = {"dtype": "int32", "shape": [1]}
MAP = {"dtype": "int32", "shape": [-1, -1, -1]}


def test_signature_changes_name_every_difference() -> None:
    a = {"predict_images": sig({"images": IMAGES, "height": SIZE, "width": SIZE}, {"segmentation_map": MAP}),
         "old": sig({"x": SIZE}, {"y": SIZE})}
    b = {"predict_images": sig({"images": IMAGES, "height": SIZE, "scale": SIZE},
                               {"segmentation_map": {"dtype": "int64", "shape": [-1, -1, -1]}},
                               method="tensorflow/serving/regress"),
         "new": sig({"x": SIZE}, {"y": SIZE})}
    lines = [c.describe() for c in signature_changes(a, b)]
    assert lines == [
        "added signature 'new': tensorflow/serving/predict (x -> y)",
        "removed signature 'old': tensorflow/serving/predict (x -> y)",
        "changed method 'tensorflow/serving/predict' of 'predict_images': "
        "tensorflow/serving/predict -> tensorflow/serving/regress",
        "added input 'scale' of 'predict_images': int32 [1]",
        "removed input 'width' of 'predict_images': int32 [1]",
        "changed output 'segmentation_map' of 'predict_images': int32 [-1, -1, -1] -> int64 [-1, -1, -1]",
    ]
    assert signature_changes(a, a) == []


def test_agreement_and_miou_of_b_against_a() -> None:
    a = np.zeros((4, 4), np.int32)
    a[:2] = 15
    b = a.copy()
    b[0, :2] = 0  # 2 of 16 pixels differ
    result = agreement(a, b, 21, [f"c{i}" for i in range(21)])
    assert result.differing == 2 and result.agreement == pytest.approx(14 / 16)
    # IoU person = 6/8, IoU background = 8/10
    assert result.miou == pytest.approx((6 / 8 + 8 / 10) / 2)
    same = agreement(a, a, 21, [f"c{i}" for i in range(21)])
    assert (same.agreement, same.miou, same.differing) == (1.0, 1.0, 0)
