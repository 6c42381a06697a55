"""Unit tests of the pictures (lifecycle.predictions.pictures) and of checking answers (lifecycle.predictions.predict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lifecycle.errors import ImageError, ResponseMismatch
from lifecycle.networks.voc import voc_palette
from lifecycle.predictions.pictures import (
    class_shares,
    diff_strip,
    mask_image,
    overlay,
    read_photo,
    write_png,
)
from lifecycle.predictions.predict import mask_from_answer, rest_body
from lifecycle.predictions.target import RequestTarget


def test_read_photo_reads_any_mode_as_rgb(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(grey)
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (5, 2), (10, 20, 30, 40)).save(rgba)
    assert read_photo(grey).shape == (3, 4, 3)
    photo = read_photo(rgba)
    assert photo.dtype == np.uint8 and photo.shape == (2, 5, 3) and tuple(photo[0, 0]) == (10, 20, 30)


def test_read_photo_refusals_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "a.jpg"
    text.write_text("hello")
    truncated = tmp_path / "b.png"
    Image.new("RGB", (50, 50), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    for path, words in ((text, "a.jpg is not a readable image"), (truncated, "b.png is not a readable image"),
                        (tmp_path / "c.png", "image not found"), (tmp_path, "is a folder")):
        with pytest.raises(ImageError, match=words):
            read_photo(path)


def test_mask_png_keeps_class_ids_and_shows_voc_colours(tmp_path: Path) -> None:
    mask = np.array([[0, 15, 15], [12, 0, 20]], np.int32)
    path = write_png(tmp_path / "m.png", mask_image(mask))
    image = Image.open(path)
    assert image.mode == "P" and image.size == (3, 2)
    np.testing.assert_array_equal(np.asarray(image), mask)
    rgb = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(rgb[0, 1], voc_palette()[15])  # person: (192, 128, 128)
    assert tuple(rgb[0, 1]) == (192, 128, 128) and tuple(rgb[0, 0]) == (0, 0, 0)
    with pytest.raises(ValueError):
        mask_image(np.array([[300]]))


def test_overlay_blends_and_diff_strip_has_four_panels() -> None:
    photo = np.full((2, 3, 3), 200, np.uint8)
    a = np.zeros((2, 3), np.int32)
    b = a.copy()
    b[1, 2] = 15
    blended = overlay(photo, b)
    assert tuple(blended[0, 0]) == (100, 100, 100)  # half photo, half black background
    assert tuple(blended[1, 2]) == (196, 164, 164)  # half photo, half person colour
    strip = diff_strip(photo, a, b)
    assert strip.shape == (2, 12, 3)
    np.testing.assert_array_equal(strip[:, :3], photo)
    assert tuple(strip[1, 6 + 2]) == (192, 128, 128) and tuple(strip[1, 3 + 2]) == (0, 0, 0)
    assert tuple(strip[1, 9 + 2]) == (255, 255, 255) and tuple(strip[0, 9]) == (80, 80, 80)


def test_class_shares_by_name_largest_first() -> None:
    mask = np.array([[0, 15, 15, 15], [12, 15, 0, 0]])
    assert class_shares(mask, 21) == {"person": 0.5, "background": 0.375, "dog": 0.125}
    assert list(class_shares(np.array([[22]]), 23)) == ["class_22"]


def test_answers_are_checked_against_the_contract() -> None:
    target = RequestTarget("deeplab")
    good = np.zeros((1, 2, 3), np.int32)
    assert mask_from_answer(target, good, 2, 3, "server x").shape == (2, 3)
    for bad, words in ((np.zeros((1, 3, 2), np.int32), r"int32 \[1, 3, 2\], expected int32 \[1, 2, 3\]"),
                       (np.zeros((1, 2, 3), np.float32), "float32"),
                       (np.full((1, 2, 3), 21, np.int32), "outside the model's 21 classes"),
                       ([[[0, 1], [0]]], "not a rectangular array")):
        with pytest.raises(ResponseMismatch, match=words):
            mask_from_answer(target, bad, 2, 3, "server x")
    body = rest_body(RequestTarget("deeplab", signature="predict_images"), np.zeros((2, 3, 3), np.uint8))
    assert body["signature_name"] == "predict_images"
    assert (body["inputs"]["height"], body["inputs"]["width"]) == ([2], [3])
    assert np.asarray(body["inputs"]["images"]).shape == (1, 2, 3, 3)
