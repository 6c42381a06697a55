"""Write the small labelled sets mlc ships, from the synthetic shapes generator (deterministic).

    python scripts/make_eval_sets.py [--out .]

- ``data/voc-mini/``: Pascal VOC layout -- ``JPEGImages/<id>.jpg`` (64x64 scenes),
  ``SegmentationClass/<id>.png`` (palette masks of VOC class ids, object borders 255 = ignore as
  in VOC) and ``ImageSets/Segmentation/{train,val}.txt``;
- ``data/shapes-mini/val/<class>/<n>.png``: one shape per 32x32 image, a folder per class;
- ``configs/shapes_test.png``: the classifier's test image (40x32, not square).

Running it again rewrites the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from lifecycle.networks.voc import DEMO_CLASSES, class_name, voc_palette
from lifecycle.train.scenes import shape_image, synthetic_scene

VOC_SEED, VOC_IDS = 20261129, {"train": 4, "val": 10}
SHAPES_SEED, SHAPES_PER_CLASS = 20261130, 5


def _border(label: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood holds another class: VOC's 255 outline."""
    edge = np.zeros(label.shape, bool)
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:-1, :] |= label[:-1, :] != label[1:, :]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    return edge


def voc_mini(root: Path) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette().ravel().tolist()
    index = 0
    for split, count in VOC_IDS.items():
        ids = []
        for _ in range(count):
            image, label = synthetic_scene(VOC_SEED, index, 64)
            name = f"2026_{index:06d}"
            Image.fromarray(np.round(image).astype(np.uint8)).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
            mask = np.where(_border(label), 255, label).astype(np.uint8)
            png = Image.fromarray(mask, mode="P")
            png.putpalette(palette)
            png.save(root / "SegmentationClass" / f"{name}.png", optimize=True)
            ids.append(name)
            index += 1
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def shapes_mini(root: Path) -> None:
    names = [class_name(c) for c in DEMO_CLASSES]
    for i in range(SHAPES_PER_CLASS * len(names)):
        image, which = shape_image(SHAPES_SEED, i, 32)
        folder = root / "val" / names[which]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image).astype(np.uint8)).save(folder / f"{i // len(names)}.png", optimize=True)


def test_image(path: Path) -> None:
    image, _ = shape_image(SHAPES_SEED + 1, 2, 40)  # class 2 (car)
    Image.fromarray(np.round(image[4:36]).astype(np.uint8)).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="The folder to write data/ and configs/ into.")
    out = Path(parser.parse_args().out)
    voc_mini(out / "data" / "voc-mini")
    shapes_mini(out / "data" / "shapes-mini")
    (out / "configs").mkdir(parents=True, exist_ok=True)
    test_image(out / "configs" / "shapes_test.png")


if __name__ == "__main__":
    main()
