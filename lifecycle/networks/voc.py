"""The Pascal VOC classes and colour map, and the VOC classes the demo's synthetic scenes draw (no TensorFlow)."""

from __future__ import annotations

import numpy as np

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard Pascal VOC colour map: ``n`` x 3 uint8 (class 0 black, 1 (128,0,0), ...)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def class_name(class_id: int, num_classes: int = len(VOC_CLASSES)) -> str:
    """VOC name of a class id (``class_<id>`` beyond the 21 VOC classes)."""
    return VOC_CLASSES[class_id] if 0 <= class_id < min(num_classes, len(VOC_CLASSES)) else f"class_{class_id}"


# Classes the synthetic scenes draw, each with a fixed shape and hue so that a small network
# can learn them in a few hundred steps.
DEMO_CLASSES: tuple[int, ...] = (1, 3, 7, 8, 12, 15)  # aeroplane, bird, car, cat, dog, person
