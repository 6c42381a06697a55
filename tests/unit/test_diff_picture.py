"""The captioned diff picture: enlarged by whole pixels to at least 512 px, panels where diff_layout says."""

from __future__ import annotations

import numpy as np

from lifecycle.networks.voc import VOC_CLASSES, voc_palette
from lifecycle.predictions.pictures import GAP, diff_layout, diff_picture


def _masks(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    photo = np.full((h, w, 3), 90, np.uint8)
    a = np.zeros((h, w), np.int32)
    a[: h // 2] = 15
    b = a.copy()
    b[:, : w // 3] = 7
    return photo, a, b


def test_a_small_photo_is_enlarged_and_its_panels_keep_every_class() -> None:
    photo, a, b = _masks(48, 64)
    picture = diff_picture(photo, a, b, 2, 3, VOC_CLASSES)
    scale, top, lefts = diff_layout(64, 48)
    assert scale == 2 and picture.shape[1] == 4 * 64 * 2 + 5 * GAP >= 512
    panel_a = picture[top:top + 96:2, lefts[1]:lefts[1] + 128:2]
    np.testing.assert_array_equal(panel_a, voc_palette(256)[a])
    legend = picture[top + 96 + GAP:]
    for class_id in (0, 7, 15):  # each class either mask shows has its colour in the legend
        assert np.any(np.all(legend == voc_palette(256)[class_id], axis=-1))
    assert not np.any(np.all(legend == voc_palette(256)[12], axis=-1))  # dog is in neither mask


def test_a_large_photo_keeps_its_size() -> None:
    photo, a, b = _masks(100, 300)
    picture = diff_picture(photo, a, b, 1, 2, VOC_CLASSES)
    assert diff_layout(300, 100)[0] == 1 and picture.shape[1] == 4 * 300 + 5 * GAP
