"""mlc predict through the CLI against a real mlc-model-server serving registered DeepLab versions.

The session server (``served_deeplab`` in conftest.py) serves versions 1, 2 and 3 with
``stable`` -> 2 and ``canary`` -> 3, and is listed in the home's configs/servers.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.networks.voc import VOC_CLASSES, voc_palette
from lifecycle.predictions.pictures import read_photo
from tests.support.deeplab_runs import ServedDeeplab
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e
runner = CliRunner()


def mlc(served: ServedDeeplab, *args: str | Path) -> object:
    """Run mlc in the served home."""
    return runner.invoke(app, [str(a) for a in args], env={"MLC_HOME": str(served.paths.home)})


def predict_json(served: ServedDeeplab, *args: str | Path) -> dict:
    result = mlc(served, "predict", "deeplab", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, served_deeplab: ServedDeeplab) -> list[Path]:
    """The definition's test image (PNG, 64x48) and a larger JPEG of another shape (90x70)."""
    folder = tmp_path_factory.mktemp("photos")
    png = folder / "scene.png"
    png.write_bytes((served_deeplab.paths.configs / "test_image.png").read_bytes())
    jpeg = folder / "street.jpg"
    Image.open(png).convert("RGB").resize((90, 70), Image.BILINEAR).save(jpeg, quality=92)
    return [png, jpeg]


def check_pictures(photo: Path, mask_file: Path, overlay_file: Path) -> np.ndarray:
    """The mask is a VOC palette PNG the size of the photo; the overlay shows the photo changed."""
    source = Image.open(photo).convert("RGB")
    mask_png = Image.open(mask_file)
    assert mask_png.format == "PNG" and mask_png.mode == "P"
    assert mask_png.size == source.size
    ids = np.asarray(mask_png)
    assert ids.max() < len(VOC_CLASSES)
    palette = np.asarray(mask_png.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette, voc_palette(256))
    colours = np.asarray(mask_png.convert("RGB")).reshape(-1, 3)
    present = {tuple(c) for c in np.unique(colours, axis=0)}
    assert present == {tuple(voc_palette(256)[i]) for i in np.unique(ids)}
    over = Image.open(overlay_file)
    assert over.mode == "RGB" and over.size == source.size
    assert not np.array_equal(np.asarray(over), np.asarray(source))
    return ids


def test_predict_writes_voc_masks_and_overlays(served_deeplab: ServedDeeplab, photos: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    result = mlc(served_deeplab, "predict", "deeplab", *photos, "--label", "stable", "--out", out)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"deeplab: asked for label stable over grpc (sync) at {served_deeplab.grpc}" in text
    assert text.count("answered by version 2") == 2
    assert "scene.png  64x48" in text and "street.jpg  90x70" in text
    for photo in photos:
        stem = photo.stem
        check_pictures(photo, out / f"{stem}.v2.mask.png", out / f"{stem}.v2.overlay.png")
        assert f"mask     {out / f'{stem}.v2.mask.png'}" in text
    # The class shares are printed by VOC name.
    lines = text.splitlines()
    shares_line = lines[next(i for i, ln in enumerate(lines) if "scene.png  64x48" in ln) + 1]
    assert any(name in shares_line for name in VOC_CLASSES) and "%" in shares_line


def test_json_shares_match_the_mask(served_deeplab: ServedDeeplab, photos: list[Path], tmp_path: Path) -> None:
    report = predict_json(served_deeplab, photos[0], "--version", "1", "--out", tmp_path)
    (image,) = report["images"]
    assert report["asked"] == "version 1" and image["version"] == 1
    ids = np.asarray(Image.open(image["mask"]))
    counts = np.bincount(ids.ravel(), minlength=len(VOC_CLASSES))
    expected = {VOC_CLASSES[i]: counts[i] / ids.size for i in np.flatnonzero(counts)}
    assert image["classes"] == pytest.approx(expected)
    assert list(image["classes"].values()) == sorted(image["classes"].values(), reverse=True)


def test_async_rest_and_sync_agree_per_version(served_deeplab: ServedDeeplab, photos: list[Path], tmp_path: Path) -> None:
    sync = predict_json(served_deeplab, *photos, "--version", "3", "--out", tmp_path / "sync")
    future = predict_json(served_deeplab, *photos, "--version", "3", "--async", "--out", tmp_path / "async")
    rest = predict_json(
        served_deeplab, *photos, "--label", "canary", "--rest", "--server", served_deeplab.rest, "--out", tmp_path / "rest"
    )
    assert (sync["call"], future["call"], rest["transport"]) == ("sync", "async", "rest")
    assert rest["server"] == served_deeplab.rest
    for report in (sync, future, rest):
        assert [i["version"] for i in report["images"]] == [3, 3]
    for a, b, c in zip(sync["images"], future["images"], rest["images"], strict=True):
        masks = [np.asarray(Image.open(i["mask"])) for i in (a, b, c)]
        np.testing.assert_array_equal(masks[0], masks[1])
        np.testing.assert_array_equal(masks[0], masks[2])
    # The default server for --rest is the REST address of configs/servers.yaml; no label or
    # version asks for the highest loaded version.
    latest = predict_json(served_deeplab, photos[0], "--rest", "--out", tmp_path / "latest")
    assert latest["asked"] == "latest" and latest["images"][0]["version"] == 3


def test_each_version_answers_with_its_own_mask(served_deeplab: ServedDeeplab, photos: list[Path], tmp_path: Path) -> None:
    """The mask of ``--version N`` is exactly what version N's SavedModel computes for the photo."""
    import tensorflow as tf

    pixels = read_photo(photos[1]).astype(np.float32)
    h, w = pixels.shape[:2]
    masks = {}
    for version in (1, 3):
        report = predict_json(served_deeplab, photos[1], "--version", str(version), "--out", tmp_path / str(version))
        assert report["images"][0]["version"] == version
        masks[version] = np.asarray(Image.open(report["images"][0]["mask"]))
        model = tf.saved_model.load(str(served_deeplab.paths.version_dir("deeplab", version)))
        own = model.signatures["predict_images"](
            images=tf.constant(pixels[None]), height=tf.constant([h]), width=tf.constant([w]))["segmentation_map"]
        np.testing.assert_array_equal(masks[version], own.numpy()[0])
    assert not np.array_equal(masks[1], masks[3]), "versions 1 and 3 answered with the same mask"


def one_error_line(result: object) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_refuses_a_file_that_is_not_an_image(served_deeplab: ServedDeeplab, photos: list[Path], tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are not pixels\n")
    result = mlc(served_deeplab, "predict", "deeplab", photos[0], fake, "--out", tmp_path / "out")
    line = one_error_line(result)
    assert result.exit_code == 1
    assert "notes.jpg is not a readable image" in line
    assert not (tmp_path / "out").exists()  # nothing was sent, nothing written
    missing = one_error_line(mlc(served_deeplab, "predict", "deeplab", tmp_path / "nope.png"))
    assert "image not found" in missing and "nope.png" in missing


def test_unreachable_server_is_one_line(served_deeplab: ServedDeeplab, photos: list[Path], tmp_path: Path) -> None:
    port = free_port()
    grpc_line = one_error_line(
        mlc(served_deeplab, "predict", "deeplab", photos[0], "--server", f"127.0.0.1:{port}", "--timeout", "5",
            "--out", tmp_path)
    )
    assert f"127.0.0.1:{port}" in grpc_line and "did not answer" in grpc_line
    rest_line = one_error_line(
        mlc(served_deeplab, "predict", "deeplab", photos[0], "--rest", "--server", f"127.0.0.1:{port}",
            "--timeout", "5", "--out", tmp_path)
    )
    assert f"127.0.0.1:{port}" in rest_line and "unreachable" in rest_line
    assert not list(tmp_path.glob("*.png"))


def test_refusals_of_the_request(served_deeplab: ServedDeeplab, photos: list[Path], tmp_path: Path) -> None:
    both = mlc(served_deeplab, "predict", "deeplab", photos[0], "--version", "1", "--label", "stable")
    assert both.exit_code == 2 and "not both" in both.stderr
    unknown = one_error_line(mlc(served_deeplab, "predict", "deeplab", photos[0], "--label", "nightly", "--out", tmp_path))
    assert "nightly" in unknown
    gone = one_error_line(mlc(served_deeplab, "predict", "deeplab", photos[0], "--version", "9", "--out", tmp_path))
    assert "9" in gone
