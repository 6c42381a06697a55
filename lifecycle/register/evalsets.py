"""Evaluation sets: the labelled images a version is scored on at register time.

Three sources (``validation.eval.source`` of a model definition):

- ``synthetic``: the procedural shapes-on-textures scenes of :mod:`lifecycle.networks.deeplab`,
  fixed by seed, count and size (no files);
- ``voc``: the Pascal VOC layout under ``root`` -- ``ImageSets/Segmentation/<split>.txt`` lists
  ids, ``JPEGImages/<id>.jpg`` is the photo, ``SegmentationClass/<id>.png`` the palette mask
  whose pixel values are class ids (255 = ignore, "void");
- ``folder``: for classifiers, a folder per class name under ``root/<split>`` (or ``root``
  itself when it has no ``<split>`` folder), each holding that class's images.

Everything is read and checked before a version is built, so a missing or wrongly sized mask,
or a split listing absent ids, is one :class:`EvalSetError` naming the file and nothing is
published. The set's ``description`` (source, root, split, count and a digest of the files)
goes into every version's report; the promote gate compares versions only when their
descriptions are equal.

Only ``synthetic`` imports TensorFlow (through the DeepLab module); the file sources need
pillow and numpy alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lifecycle.errors import EvalSetError
from lifecycle.register.metrics import IGNORE
from lifecycle.store.config import EvalSetSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclass
class EvalSet:
    """Labelled images: float32 RGB [H, W, 3] in [0, 255] each, with a mask [H, W] or a class index."""

    ids: list[str]
    images: list[np.ndarray]
    labels: list[Any]  # int32 [H, W] masks (segmentation) or ints (classification)
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, size: int) -> Iterator[tuple[list[int], np.ndarray]]:
        """(indices, stacked images) of at most ``size`` equally sized images, in order of first appearance."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(self.images):
            groups.setdefault(tuple(image.shape), []).append(i)
        for members in groups.values():
            for start in range(0, len(members), size):
                chunk = members[start:start + size]
                yield chunk, np.stack([self.images[i] for i in chunk]).astype(np.float32)


def load(spec: EvalSetSpec, root: Path | None, class_names: list[str]) -> EvalSet:
    """Read and check the evaluation set a definition names."""
    if spec.source == "synthetic":
        return _synthetic(spec)
    assert root is not None  # validation_settings insists on a root for file sources
    if not root.is_dir():
        raise EvalSetError(f"evaluation set {spec.root!r} not found: no folder {root}")
    if spec.source == "voc":
        return _voc(spec, root, len(class_names))
    return _folder(spec, root, class_names)


def _synthetic(spec: EvalSetSpec) -> EvalSet:
    from lifecycle.train import scenes

    data = scenes.SyntheticSet(spec.seed, spec.count, spec.size)
    images, labels = data.arrays()
    return EvalSet([str(i) for i in range(spec.count)], list(images), list(labels), data.to_dict())


def _read_rgb(path: Path, root: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise EvalSetError(f"evaluation set: {path.relative_to(root)} under {root} is not a readable image") from e


def _digest(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def _voc(spec: EvalSetSpec, root: Path, num_classes: int) -> EvalSet:
    from PIL import Image, UnidentifiedImageError

    split_file = root / "ImageSets" / "Segmentation" / f"{spec.split}.txt"
    if not split_file.is_file():
        raise EvalSetError(f"evaluation set {root}: no split file ImageSets/Segmentation/{spec.split}.txt")
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise EvalSetError(f"evaluation set {root}: ImageSets/Segmentation/{spec.split}.txt lists no ids")
    absent = [i for i in ids if not (root / "JPEGImages" / f"{i}.jpg").is_file()]
    if absent:
        shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        raise EvalSetError(f"evaluation set {root}: ImageSets/Segmentation/{spec.split}.txt lists ids absent "
                           f"from JPEGImages/: {shown}")
    images, masks, files = [], [], []
    for i in ids:
        photo, mask_file = root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png"
        if not mask_file.is_file():
            raise EvalSetError(f"evaluation set {root}: missing mask SegmentationClass/{i}.png for JPEGImages/{i}.jpg")
        image = _read_rgb(photo, root)
        try:
            with Image.open(mask_file) as im:
                if im.mode not in ("P", "L"):
                    raise EvalSetError(f"evaluation set {root}: mask SegmentationClass/{i}.png is {im.mode}, "
                                       "not a palette (P) or grey (L) image of class ids")
                mask = np.asarray(im, dtype=np.int32)
        except (UnidentifiedImageError, OSError) as e:
            raise EvalSetError(f"evaluation set {root}: mask SegmentationClass/{i}.png is not a readable PNG") from e
        if mask.shape != image.shape[:2]:
            raise EvalSetError(
                f"evaluation set {root}: mask SegmentationClass/{i}.png is {mask.shape[1]}x{mask.shape[0]}, "
                f"its photo JPEGImages/{i}.jpg is {image.shape[1]}x{image.shape[0]}"
            )
        bad = np.unique(mask[(mask != IGNORE) & (mask >= num_classes)])
        if bad.size:
            raise EvalSetError(f"evaluation set {root}: mask SegmentationClass/{i}.png has class ids "
                               f"{bad[:5].tolist()}, beyond the model's {num_classes} classes (255 = ignore)")
        images.append(image)
        masks.append(mask)
        files += [photo, mask_file]
    description = {"source": "voc", "root": spec.root, "split": spec.split, "count": len(ids),
                   "digest": _digest(root, files)}
    return EvalSet(ids, images, masks, description)


def _folder(spec: EvalSetSpec, root: Path, class_names: list[str]) -> EvalSet:
    base = root / spec.split if (root / spec.split).is_dir() else root
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if not folders:
        raise EvalSetError(f"evaluation set {base}: no class folders (expected one folder per class name)")
    unknown = [p.name for p in folders if p.name not in class_names]
    if unknown:
        raise EvalSetError(f"evaluation set {base}: folder {unknown[0]!r} is not one of the model's classes "
                           f"({', '.join(class_names)})")
    ids, images, labels, files = [], [], [], []
    for folder in folders:
        members = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for f in members:
            ids.append(str(f.relative_to(base)))
            images.append(_read_rgb(f, root))
            labels.append(class_names.index(folder.name))
            files.append(f)
    if not ids:
        raise EvalSetError(f"evaluation set {base}: the class folders hold no images")
    description = {"source": "folder", "root": spec.root, "split": spec.split if base != root else None,
                   "count": len(ids), "digest": _digest(root, files)}
    return EvalSet(ids, images, labels, description)
