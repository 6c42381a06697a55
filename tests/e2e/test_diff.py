"""mlc diff through the CLI: two registered DeepLab versions told apart in numbers and pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.networks.voc import voc_palette
from lifecycle.predictions.pictures import GAP, diff_layout
from lifecycle.store import registry
from lifecycle.store.config import Paths

pytestmark = pytest.mark.e2e
runner = CliRunner()


def mlc(paths: Paths, *args: str | Path) -> object:
    return runner.invoke(app, [str(a) for a in args], env={"MLC_HOME": str(paths.home)})


def test_diff_of_two_versions_in_numbers_and_pictures(registered_home: Paths, tmp_path: Path) -> None:
    photo = tmp_path / "wide.png"
    Image.open(registered_home.configs / "test_image.png").convert("RGB").resize((100, 30)).save(photo)
    out = tmp_path / "diffs"
    result = mlc(registered_home, "diff", "deeplab", "1", "3", "--image", photo, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["a"], report["b"], report["signature_changes"], report["identical"]) == (1, 3, [], False)
    test_image, wide = report["images"]
    assert (test_image["width"], test_image["height"], wide["width"], wide["height"]) == (64, 48, 100, 30)
    ev = report["eval"]
    assert ev["images"] == 16 and ev["differing_pixels"] > 0
    assert 0.0 <= ev["agreement"] < 1.0 and 0.0 <= ev["miou"] < 1.0
    # Each side's mIoU against the evaluation set's truth is the one measured at registration.
    rec = registry.load(registered_home).model("deeplab")
    assert ev["miou_a"] == pytest.approx(rec.version(1).report["metrics"]["miou"], abs=1e-3)
    assert ev["miou_b"] == pytest.approx(rec.version(3).report["metrics"]["miou"], abs=1e-3)
    assert ev["agreement"] == pytest.approx(1 - ev["differing_pixels"] / (16 * 64 * 64))

    for d, source in ((test_image, registered_home.configs / "test_image.png"), (wide, photo)):
        assert Path(d["picture"]) == out / f"deeplab-1-vs-3.{Path(d['image']).stem}.png"
        picture = np.asarray(Image.open(d["picture"]).convert("RGB"))
        w, h = d["width"], d["height"]
        scale, top, lefts = diff_layout(w, h)
        assert picture.shape[1] >= 512 and picture.shape[0] > top + h * scale  # captions above, legend below
        # Each panel is the photo's size times ``scale`` in whole pixels: taking every scale-th pixel gives it back.
        photo_panel, mask_a, mask_b, disagreement = (
            picture[top:top + h * scale:scale, left:left + w * scale:scale] for left in lefts)
        np.testing.assert_array_equal(photo_panel, np.asarray(Image.open(source).convert("RGB")))
        palette = {tuple(c) for c in voc_palette(256)}
        for panel in (mask_a, mask_b):
            assert {tuple(c) for c in panel.reshape(-1, 3)} <= palette
        differing = np.all(disagreement == 255, axis=-1) & np.any(mask_a != mask_b, axis=-1)
        assert int(differing.sum()) == d["differing_pixels"]
        gap = picture[top:top + h * scale, lefts[1] - GAP + 1:lefts[1] - 1]
        assert np.all(gap == 255)  # white space separates the panels


def test_diff_for_people_and_of_a_version_with_itself(registered_home: Paths, tmp_path: Path) -> None:
    result = mlc(registered_home, "diff", "deeplab", "2", "2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "deeplab: version 2 (A) vs version 2 (B)" in result.stdout
    assert "Signatures: identical" in result.stdout
    assert "100.00%" in result.stdout and "eval set (16 scenes)" in result.stdout
    assert "The two versions give the same masks." in result.stdout
    assert (tmp_path / "deeplab-2-vs-2.test_image.png").is_file()


def test_diff_refusals_are_one_line(registered_home: Paths, tmp_path: Path) -> None:
    unknown = mlc(registered_home, "diff", "deeplab", "1", "9", "--out", tmp_path)
    assert unknown.exit_code == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert "no version 9" in unknown.stderr
    fake = tmp_path / "x.png"
    fake.write_bytes(b"\x89PNG but not really")
    bad = mlc(registered_home, "diff", "deeplab", "1", "2", "--image", fake, "--out", tmp_path)
    assert bad.exit_code == 1 and "x.png is not a readable image" in bad.stderr
    assert not list(tmp_path.glob("deeplab-*.png"))
