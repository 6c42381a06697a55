"""Pictures of segmentation maps: reading photos, and writing masks, overlays and diff strips.

- A **photo** is read with pillow (JPEG, PNG, anything pillow opens) as uint8 RGB [H, W, 3].
- A **mask** is written as a palette ("P" mode) PNG whose pixel values are the class ids and
  whose palette is the Pascal VOC colour map, as the VOC ground-truth PNGs are. Any viewer
  shows the colours; any program reads the class ids back with ``np.asarray(Image.open(p))``.
- An **overlay** is the photo and the coloured mask blended half and half, as the DeepLab demo
  notebook shows them.
- A **diff strip** puts photo | mask A | mask B | disagreement side by side, each panel the size
  of the photo; the disagreement panel shows the dimmed photo with differing pixels in white.

The VOC palette and class names come from :mod:`lifecycle.networks.voc`. Pillow is imported
where a picture is read or written, not when this module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lifecycle.errors import ImageError
from lifecycle.networks.voc import class_name, voc_palette
from lifecycle.store.files import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

OVERLAY_ALPHA = 0.5  # weight of the mask colours in the overlay
DISAGREEMENT_COLOUR = (255, 255, 255)  # not a VOC class colour, so it cannot be misread as one
DIMMED = 0.4  # brightness of the photo under the disagreement pixels


def read_photo(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3]; ImageError names the file if it is not an image."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if p.is_dir():
        raise ImageError(f"{p} is a folder, not an image file")
    try:
        with Image.open(p) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError as e:
        raise ImageError(f"image not found: {p}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        # pillow raises UnidentifiedImageError for non-images and OSError/SyntaxError for
        # truncated or corrupt ones.
        raise ImageError(f"{p} is not a readable image (JPEG, PNG, ...): {e}") from e
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{p} is an empty image")
    return arr


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """A class-id map [H, W] as VOC colours, uint8 RGB [H, W, 3]."""
    return voc_palette(256)[np.clip(mask, 0, 255).astype(np.uint8)]


def mask_image(mask: np.ndarray) -> Image.Image:
    """A class-id map [H, W] as a "P"-mode pillow image with the VOC palette."""
    from PIL import Image

    if mask.ndim != 2:
        raise ValueError(f"a mask is [H, W], not {list(mask.shape)}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > 255):
        raise ValueError(f"class ids span [{int(mask.min())}, {int(mask.max())}], beyond a palette PNG's 0..255")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(voc_palette(256).ravel().tolist())
    return image


def overlay(photo: np.ndarray, mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The photo with the coloured mask blended over it, uint8 RGB [H, W, 3]."""
    blended = (1.0 - alpha) * photo.astype(np.float32) + alpha * colour_mask(mask).astype(np.float32)
    return np.round(blended).astype(np.uint8)


def diff_strip(photo: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """photo | mask A | mask B | disagreement, side by side: uint8 RGB [H, 4 W, 3]."""
    grey = photo.astype(np.float32).mean(axis=-1, keepdims=True) * DIMMED
    disagreement = np.repeat(np.round(grey).astype(np.uint8), 3, axis=-1)
    disagreement[mask_a != mask_b] = DISAGREEMENT_COLOUR
    return np.concatenate([photo, colour_mask(mask_a), colour_mask(mask_b), disagreement], axis=1)


def class_shares(mask: np.ndarray, num_classes: int) -> dict[str, float]:
    """Share of the pixels per class name, largest first, for the classes present."""
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=num_classes)
    total = max(int(mask.size), 1)
    order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], i))
    return {class_name(int(i), max(num_classes, len(counts))): float(counts[i]) / total for i in order}


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, picture: np.ndarray | Image.Image) -> Path:
    """Write an RGB array or a pillow image as PNG, atomically (a viewer never sees half a file)."""
    from PIL import Image

    image = Image.fromarray(picture, mode="RGB") if isinstance(picture, np.ndarray) else picture
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _png_bytes(image))
    return path
