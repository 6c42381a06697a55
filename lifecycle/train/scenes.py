"""The demo's procedural data: shapes-on-texture scenes with VOC labels, fixed by (seed, index).

The DeepLab trainer and the ``synthetic`` evaluation source draw whole scenes; the classifier's
trainer draws single shapes (:func:`shape_image`). numpy only: no TensorFlow.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lifecycle.networks.voc import DEMO_CLASSES

SHAPES = ("triangle", "disc", "box")


@dataclass(frozen=True)
class SyntheticSet:
    """A deterministic set of shapes-on-textures scenes: image i depends only on (seed, i)."""

    seed: int = 0
    count: int = 8
    size: int = 64
    classes: tuple[int, ...] = DEMO_CLASSES

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for reports)."""
        return {"source": "synthetic", "seed": self.seed, "count": self.count, "size": self.size,
                "classes": list(self.classes)}

    def arrays(self, start: int = 0, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Images float32 [n,s,s,3] in [0,255] and labels int32 [n,s,s] of scenes start..start+n."""
        n = self.count if count is None else count
        pairs = [synthetic_scene(self.seed, start + i, self.size, self.classes) for i in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _class_colour(class_id: int, classes: tuple[int, ...]) -> np.ndarray:
    hue = classes.index(class_id) / len(classes)
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95), np.float32) * 255.0


def synthetic_scene(
    seed: int, index: int, size: int, classes: tuple[int, ...] = DEMO_CLASSES, objects: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: 1-3 coloured shapes labelled with VOC ids on a low-saturation texture.

    ``objects`` names the classes to draw instead (one shape each): the classifier's images.
    """
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # Background: a grey level, a few oriented sine gratings and noise, slightly tinted.
    texture = np.full((size, size), rng.uniform(70, 180), np.float32)
    for _ in range(3):
        theta, freq, phase = rng.uniform(0, math.pi), rng.uniform(2, 12), rng.uniform(0, 2 * math.pi)
        texture += rng.uniform(8, 25) * np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
    image = texture[..., None] + rng.uniform(-12, 12, 3).astype(np.float32) + rng.normal(0, 6, (size, size, 3))
    label = np.zeros((size, size), np.int32)
    count = len(objects) if objects is not None else int(rng.integers(1, 4))
    for n in range(count):
        # The draws stay in this order (count, then class and geometry per shape): scenes are fixed by (seed, index).
        cls = objects[n] if objects is not None else int(rng.choice(classes))
        shape = SHAPES[classes.index(cls) % len(SHAPES)]
        cy, cx = rng.uniform(0.2, 0.8, 2)
        r = rng.uniform(0.12, 0.25)
        if shape == "disc":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif shape == "box":
            ry = r * rng.uniform(0.6, 1.0)
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= r)
        else:  # an upward triangle: below the apex, inside both slanted edges
            mask = (yy <= cy + r) & (yy - (cy - r) >= 2 * np.abs(xx - cx))
        colour = _class_colour(cls, classes) * rng.uniform(0.8, 1.05)
        image[mask] = colour + rng.normal(0, 6, (int(mask.sum()), 3))
        label[mask] = cls
    return np.clip(image, 0, 255).astype(np.float32), label


def shape_image(seed: int, index: int, size: int, classes: tuple[int, ...] = DEMO_CLASSES) -> tuple[np.ndarray, int]:
    """Image ``index`` of ``seed``: one shape of class ``index % len(classes)`` on a texture; (image, class index)."""
    which = index % len(classes)
    image, _ = synthetic_scene(seed, index, size, classes, objects=(classes[which],))
    return image, which


def demo_test_image() -> np.ndarray:
    """The image shipped as ``configs/test_image.png``: scene 0 of seed 2017, rows 8..55 (48x64 uint8).

    Not square, so a swapped height and width cannot go unnoticed.
    """
    image, _ = synthetic_scene(seed=2017, index=0, size=64)
    return np.round(image[8:56]).astype(np.uint8)
