"""mlc diff: signature comparison (unit), and two registered versions told apart through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lifecycle.build.deeplab import voc_palette
from lifecycle.predictions.diff import agreement, signature_changes
from lifecycle.store.config import Paths

runner = CliRunner()


def sig(inputs: dict, outputs: dict, method: str = "tensorflow/serving/predict") -> dict:
    return {"method": method, "inputs": inputs, "outputs": outputs}


IMAGES = {"dtype": "float32", "shape": [-1, -1, -1, 3]}
SIZE = {"dtype": "int32", "shape": [1]}
MAP = {"dtype": "int32", "shape": [-1, -1, -1]}


def test_signature_changes_name_every_difference() -> None:
    a = {"predict_images": sig({"images": IMAGES, "height": SIZE, "width": SIZE}, {"segmentation_map": MAP}),
         "old": sig({"x": SIZE}, {"y": SIZE})}
    b = {"predict_images": sig({"images": IMAGES, "height": SIZE, "scale": SIZE},
                               {"segmentation_map": {"dtype": "int64", "shape": [-1, -1, -1]}},
                               method="tensorflow/serving/regress"),
         "new": sig({"x": SIZE}, {"y": SIZE})}
    lines = [c.describe() for c in signature_changes(a, b)]
    assert lines == [
        "added signature 'new': tensorflow/serving/predict (x -> y)",
        "removed signature 'old': tensorflow/serving/predict (x -> y)",
        "changed method 'tensorflow/serving/predict' of 'predict_images': "
        "tensorflow/serving/predict -> tensorflow/serving/regress",
        "added input 'scale' of 'predict_images': int32 [1]",
        "removed input 'width' of 'predict_images': int32 [1]",
        "changed output 'segmentation_map' of 'predict_images': int32 [-1, -1, -1] -> int64 [-1, -1, -1]",
    ]
    assert signature_changes(a, a) == []


def test_agreement_and_miou_of_b_against_a() -> None:
    a = np.zeros((4, 4), np.int32)
    a[:2] = 15
    b = a.copy()
    b[0, :2] = 0  # 2 of 16 pixels differ
    result = agreement(a, b, 21, [f"c{i}" for i in range(21)])
    assert result.differing == 2 and result.agreement == pytest.approx(14 / 16)
    # IoU person = 6/8, IoU background = 8/10
    assert result.miou == pytest.approx((6 / 8 + 8 / 10) / 2)
    same = agreement(a, a, 21, [f"c{i}" for i in range(21)])
    assert (same.agreement, same.miou, same.differing) == (1.0, 1.0, 0)


def mlc(paths: Paths, *args: str | Path) -> object:
    return runner.invoke(app_(), [str(a) for a in args], env={"MLC_HOME": str(paths.home)})


def app_() -> object:
    from lifecycle.cli import app

    return app


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
    assert ev["miou_a"] != ev["miou_b"]
    assert ev["agreement"] == pytest.approx(1 - ev["differing_pixels"] / (16 * 64 * 64))

    for d, source in ((test_image, registered_home.configs / "test_image.png"), (wide, photo)):
        assert Path(d["picture"]) == out / f"deeplab-1-vs-3.{Path(d['image']).stem}.png"
        strip = np.asarray(Image.open(d["picture"]).convert("RGB"))
        w, h = d["width"], d["height"]
        assert strip.shape == (h, 4 * w, 3)
        np.testing.assert_array_equal(strip[:, :w], np.asarray(Image.open(source).convert("RGB")))
        palette = {tuple(c) for c in voc_palette(256)}
        for panel in (strip[:, w:2 * w], strip[:, 2 * w:3 * w]):
            assert {tuple(c) for c in panel.reshape(-1, 3)} <= palette
        differing = np.all(strip[:, 3 * w:] == 255, axis=-1) & np.any(strip[:, w:2 * w] != strip[:, 2 * w:3 * w], axis=-1)
        assert int(differing.sum()) == d["differing_pixels"]


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
