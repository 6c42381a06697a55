"""Pictures of segmentation maps: reading photos, and writing masks, overlays and diff strips.

- A **photo** is read with pillow (JPEG, PNG, anything pillow opens) as uint8 RGB [H, W, 3].
- A **mask** is written as a palette ("P" mode) PNG whose pixel values are the class ids and
  whose palette is the Pascal VOC colour map, as the VOC ground-truth PNGs are. Any viewer
  shows the colours; any program reads the class ids back with ``np.asarray(Image.open(p))``.
- An **overlay** is the photo and the coloured mask blended half and half, as the DeepLab demo
  notebook shows them.
- A **diff strip** puts photo | mask A | mask B | disagreement side by side, each panel the size
  of the photo; the disagreement panel shows the dimmed photo with differing pixels in white.
  The **diff picture** ``mlc diff`` writes captions those panels, separates them with white
  space, adds a class legend and enlarges small photos to at least 512 px of width.

The VOC palette and class names come from :mod:`lifecycle.networks.voc`. Pillow is imported
where a picture is read or written, not when this module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lifecycle.errors import ImageError, UsageError
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


def _png_bytes(image: Image.Image, text: dict[str, str] | None = None) -> bytes:
    import io

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_png(path: Path, picture: np.ndarray | Image.Image, text: dict[str, str] | None = None) -> Path:
    """Write an RGB array or a pillow image as PNG, atomically (a viewer never sees half a file).

    ``text`` goes into the PNG's tEXt chunks (``mlc-version``: the version that answered).
    """
    from PIL import Image

    image = Image.fromarray(picture, mode="RGB") if isinstance(picture, np.ndarray) else picture
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _png_bytes(image, text))
    return path


VERSION_KEY = "mlc-version"  # the tEXt chunk of a predict picture naming the version that answered


def version_tag(version: int | None) -> dict[str, str]:
    """The tEXt chunks of a predict picture made by ``version`` (``unknown`` when the server did not say)."""
    return {VERSION_KEY: "unknown" if version is None else str(version)}


def refuse_other_version(path: Path, version: int | None) -> None:
    """UsageError when ``path`` holds a picture another (or an unknown) version made: replace it only with --overwrite."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        return
    try:
        with Image.open(path) as im:
            made_by = str(getattr(im, "text", {}).get(VERSION_KEY, ""))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        made_by = ""
    if version is not None and made_by == str(version):
        return  # the same version's picture: a re-run
    whose = f"version {made_by}'s result" if made_by and made_by != "unknown" else "a picture mlc did not make for this version"
    raise UsageError(f"{path} holds {whose}; pass --overwrite to replace it (nothing written)")


# --- the captioned diff picture --------------------------------------------------------------

MIN_DIFF_WIDTH = 512  # small photos are enlarged (whole pixels, so classes stay exact) to at least this width
GAP = 6  # white space between panels and around the picture
INK = (0, 0, 0)
PAPER = (255, 255, 255)
SWATCH = 10  # side of a legend colour square


def diff_picture(photo: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, a: int, b: int,
                 names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The four panels of :func:`diff_strip`, captioned, separated, with a class legend; at least 512 px wide.

    The captions are photo, version A, version B and disagreement; the legend lists the classes
    either mask shows (colour, id, name). Small photos are enlarged by whole pixels.
    """
    from PIL import Image, ImageDraw, ImageFont

    h, w = photo.shape[:2]
    scale, top, lefts = diff_layout(w, h)
    strip = diff_strip(photo, mask_a, mask_b)
    panels = [np.repeat(np.repeat(strip[:, i * w:(i + 1) * w], scale, axis=0), scale, axis=1) for i in range(4)]
    font = ImageFont.load_default()
    line = _text_height(font) + 4
    captions = ["photo", f"version {a} (A)", f"version {b} (B)", "disagreement (white)"]
    present = sorted(set(np.unique(mask_a).tolist()) | set(np.unique(mask_b).tolist()))
    width = 4 * w * scale + 5 * GAP
    legend = _legend_rows(present, names, font, width)
    height = GAP + line + h * scale + GAP + len(legend) * (line + 2) + GAP
    canvas = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(canvas)
    for left, panel, caption in zip(lefts, panels, captions, strict=True):
        draw.text((left, GAP), _fit(draw, caption, font, w * scale), fill=INK, font=font)
        canvas.paste(Image.fromarray(panel, mode="RGB"), (left, top))
        draw.rectangle((left - 1, top - 1, left + w * scale, top + h * scale), outline=(160, 160, 160))
    palette = voc_palette(256)
    y = top + h * scale + GAP
    for row in legend:
        x = GAP
        for class_id, label in row:
            draw.rectangle((x, y + 1, x + SWATCH, y + 1 + SWATCH), fill=tuple(int(c) for c in palette[class_id]),
                           outline=INK)
            draw.text((x + SWATCH + 4, y), label, fill=INK, font=font)
            x += SWATCH + 4 + int(draw.textlength(label, font=font)) + 12
        y += line + 2
    return np.asarray(canvas, dtype=np.uint8)


def diff_layout(width: int, height: int) -> tuple[int, int, list[int]]:
    """Where :func:`diff_picture` puts a ``width`` x ``height`` photo's panels: (scale, top, left of each panel)."""
    from PIL import ImageFont

    scale = max(1, -(-(MIN_DIFF_WIDTH - 5 * GAP) // (4 * width)))  # ceil: four panels and five gaps reach the minimum
    top = GAP + _text_height(ImageFont.load_default()) + 4
    return scale, top, [GAP + i * (width * scale + GAP) for i in range(4)]


def _text_height(font: object) -> int:
    """The height of a line of ``font`` (pillow's default bitmap font: 11 px)."""
    box = font.getbbox("Ag")  # type: ignore[attr-defined]  # ImageFont and FreeTypeFont both have it
    return int(box[3] - box[1])


def _fit(draw: object, text: str, font: object, width: int) -> str:
    """``text`` shortened to fit ``width`` pixels (a caption over a narrow panel)."""
    while len(text) > 1 and draw.textlength(text, font=font) > width:  # type: ignore[attr-defined]
        text = text[:-1]
    return text


def _legend_rows(present: list[int], names: tuple[str, ...] | list[str], font: object,
                 width: int) -> list[list[tuple[int, str]]]:
    """The legend's entries (class id, ``id name``) laid out in rows that fit ``width``."""
    from PIL import Image, ImageDraw

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[int, str]]] = [[]]
    x = GAP
    for class_id in present:
        label = f"{class_id} {names[class_id] if class_id < len(names) else class_name(class_id, len(names))}"
        step = SWATCH + 4 + int(measure.textlength(label, font=font)) + 12  # type: ignore[arg-type]
        if rows[-1] and x + step > width - GAP:
            rows.append([])
            x = GAP
        rows[-1].append((class_id, label))
        x += step
    return [row for row in rows if row]
