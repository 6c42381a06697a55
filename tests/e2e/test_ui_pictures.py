"""mlc ui's pictures on real DeepLab versions: each version's mask and overlay, and two versions side by side."""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lifecycle import api
from lifecycle.serving.warmup import output_digest
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.ui import create_server
from lifecycle.ui.pictures import cache_dir
from tests.support.browser import wait_until
from tests.support.homes import REPO_ROOT, tree_state

pytestmark = pytest.mark.e2e

PICTURE_WAIT = 180.0  # the first picture imports TensorFlow and loads each version on two busy cores
SCREENSHOT = REPO_ROOT / "out" / "ui-screenshot-deeplab.png"


def loaded_images(driver: Any, selector: str) -> list[int] | None:
    """naturalWidth of every image matching ``selector`` once all have loaded, else None."""
    widths = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(i => i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0)", selector,
    )
    return widths if widths and all(widths) else None


def test_version_pictures_and_the_side_by_side_diff(browser: Any, registered_home: Paths, tmp_path: Any) -> None:
    paths = registered_home
    repo_before = tree_state(paths.model_repo)
    golden = {v.version: v.golden_digest for v in api.status("deeplab", paths=paths).models[0].versions}
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    ui = create_server(paths)
    try:
        browser.get(ui.url + "models/deeplab")
        widths = wait_until(browser, lambda d: loaded_images(d, "figure.version-pictures img"), timeout=PICTURE_WAIT,
                            what="every version's mask and overlay")
        assert len(widths) == 6
        for version, digest in golden.items():
            with urllib.request.urlopen(f"{ui.url}models/deeplab/versions/{version}/mask.png", timeout=60) as r:
                mask = Image.open(io.BytesIO(r.read()))
            assert mask.mode == "P"  # class ids as pixel values, VOC palette
            # The picture is exactly the mask the version answered at register (its golden digest).
            assert output_digest(np.asarray(mask).astype(np.int32)[None]) == digest
        assert len(list((cache_dir(paths) / "versions" / "deeplab").glob("*/overlay.png"))) == 3

        browser.find_element("css selector", "form.compare button").click()  # A=2, B=3 by default
        strip = wait_until(browser, lambda d: loaded_images(d, "figure.diff img"), timeout=PICTURE_WAIT,
                           what="the diff strip")
        result = json.loads(next((cache_dir(paths) / "diffs" / "deeplab").glob("2-vs-3-*/result.json")).read_text())
        width = result["images"][0]["width"]
        assert len(strip) == 1 and strip[0] >= 4 * width  # photo | mask A | mask B | disagreement, enlarged, with gaps
        page = browser.find_element("tag name", "main").text
        assert "deeplab: version 2 vs 3" in page
        assert f"{result['eval']['miou_a']:.4f}" in page and f"{result['eval']['miou_b']:.4f}" in page
        assert f"agreement {result['images'][0]['agreement']:.4f}" in page
        browser.save_screenshot(str(tmp_path / "ui-diff.png"))
        shutil.copyfile(tmp_path / "ui-diff.png", SCREENSHOT.with_name("ui-screenshot-diff.png"))

        browser.get(ui.url + "models/deeplab")
        wait_until(browser, lambda d: loaded_images(d, "figure.version-pictures img"), what="cached pictures")
        shot = tmp_path / "ui-screenshot-deeplab.png"
        assert browser.save_screenshot(str(shot))
        shutil.copyfile(shot, SCREENSHOT)

        # The version page shows the same (cached) pictures, and the IoU of each class the registry holds.
        browser.get(ui.url + "models/deeplab/versions/3")
        assert wait_until(browser, lambda d: loaded_images(d, "figure.pair img"), what="version 3's pictures") == [
            mask.width, mask.width]
        report = registry.full_report(paths, "deeplab", registry.load(paths).model("deeplab").version(3))
        per_class = report["metrics"]["per_class_iou"]
        bars = {b.get_attribute("data-name") for b in browser.find_elements("css selector", "svg.bars rect.bar")}
        assert bars == set(per_class)

        # Its model card (mlc card's page), opened from the version page's link.
        browser.find_element("css selector", "a.card-link").click()
        wait_until(browser, lambda d: "Model card: deeplab version 3" in d.page_source, timeout=PICTURE_WAIT,
                   what="version 3's model card")
        assert browser.title == "deeplab 3: model card"
        card = browser.find_element("tag name", "body").text
        signature = report["signature"]
        assert "## Signature contract" in card and f"| {signature['key']} |" in card, card[:600]
        assert all(f"| {name} |" in card for name in [*signature["inputs"], *signature["outputs"]])
        assert "## Lineage" in card
        chart = {b.get_attribute("data-class") for b in browser.find_elements("css selector", "svg rect.bar")}
        assert chart == set(per_class)  # the per-class IoU chart, as inline SVG
        assert wait_until(browser, lambda d: loaded_images(d, "figure img"), what="the card's pictures") == [
            mask.width, mask.width]
        with urllib.request.urlopen(f"{ui.url}models/deeplab/versions/3/card", timeout=60) as r:
            assert r.headers["Content-Type"] == "text/html; charset=utf-8"
            assert r.headers["X-Content-Type-Options"] == "nosniff" and "script-src" not in r.headers[
                "Content-Security-Policy"]
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(f"{ui.url}models/deeplab/versions/99/card", timeout=60)
        assert unknown.value.code == 404
        assert len(list((cache_dir(paths) / "cards" / "deeplab").glob("3-*/card.html"))) == 1
    finally:
        ui.stop()
    assert tree_state(paths.model_repo) == repo_before  # pictures live in .mlc/ui, never in model_repo


def test_a_classifier_has_no_masks_and_its_diff_shows_classes(browser: Any, make_byo_home: Any, shapes_run: Any) -> None:
    paths = make_byo_home("shapes")
    early = api.register(shapes_run.prefix(3), "shapes", paths=paths).version
    late = api.register(shapes_run.run_dir, "shapes", paths=paths).version
    ui = create_server(paths)
    try:
        browser.get(ui.url + "models/shapes")
        gallery = wait_until(browser, lambda d: d.find_elements("css selector", '[data-live="pictures"] p'), what="no masks")
        assert "classification model answers classes, not masks" in gallery[0].text
        assert not browser.find_elements("css selector", "figure.version-pictures img")
        browser.get(ui.url + f"models/shapes/diff?a={early}&b={late}")
        wait_until(browser, lambda d: d.find_elements("css selector", "table.classes"), timeout=PICTURE_WAIT,
                   what="the classifier diff")
        result = api.diff("shapes", early, late, out=str(paths.home / "diff-out"), paths=paths).to_dict()["classification"]
        page = browser.find_element("tag name", "main").text
        assert f"{result['accuracy_a']:.4f}" in page and f"{result['accuracy_b']:.4f}" in page
        first = result["images"][0]
        assert f"{first['a'][0][0]} {first['a'][0][1]:.3f}" in page  # A's top class on the photo, with its score
        browser.save_screenshot(str(SCREENSHOT.with_name("ui-screenshot-classifier-diff.png")))
    finally:
        ui.stop()
