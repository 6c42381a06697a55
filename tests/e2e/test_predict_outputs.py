"""mlc predict names its pictures by version, never replaces another version's without --overwrite,
and says which labels exist when asked for one that does not (the session server: stable 2, canary 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lifecycle.cli import app
from tests.support.deeplab_runs import ServedDeeplab
from tests.support.homes import tree_state

pytestmark = pytest.mark.e2e
runner = CliRunner()


def mlc(served: ServedDeeplab, *args: str | Path) -> object:
    return runner.invoke(app, [str(a) for a in args], env={"MLC_HOME": str(served.paths.home)})


def test_pictures_are_named_by_version_and_another_versions_are_kept(served_deeplab: ServedDeeplab, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    shutil.copy2(served_deeplab.paths.configs / "test_image.png", photo)
    out = tmp_path / "out"
    for label, version in (("canary", 3), ("stable", 2)):
        result = mlc(served_deeplab, "predict", "deeplab", photo, "--label", label, "--out", out)
        assert result.exit_code == 0, result.output
        assert f"mask     {out / f'photo.v{version}.mask.png'}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "photo.v2.mask.png", "photo.v2.overlay.png", "photo.v3.mask.png", "photo.v3.overlay.png"]
    v2, v3 = (np.asarray(Image.open(out / f"photo.v{v}.mask.png")) for v in (2, 3))
    assert Image.open(out / "photo.v3.mask.png").text["mlc-version"] == "3"
    # The same version again replaces its own pictures; another version's pictures under that
    # name are refused in one line and nothing is written, unless --overwrite.
    assert mlc(served_deeplab, "predict", "deeplab", photo, "--version", "2", "--out", out).exit_code == 0
    shutil.copy2(out / "photo.v2.mask.png", out / "photo.v3.mask.png")
    before = tree_state(out)
    refused = mlc(served_deeplab, "predict", "deeplab", photo, "--version", "3", "--out", out)
    assert refused.exit_code == 2
    (line,) = refused.stderr.strip().splitlines()
    assert f"{out / 'photo.v3.mask.png'} holds version 2's result; pass --overwrite" in line
    assert tree_state(out) == before
    forced = mlc(served_deeplab, "predict", "deeplab", photo, "--version", "3", "--out", out, "--overwrite")
    assert forced.exit_code == 0, forced.output
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo.v3.mask.png")), v3)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo.v2.mask.png")), v2)


@pytest.mark.parametrize("rest", [False, True])
def test_a_label_the_server_does_not_have_is_one_line_naming_the_labels(
        served_deeplab: ServedDeeplab, tmp_path: Path, rest: bool) -> None:
    where = ["--rest", "--server", served_deeplab.rest] if rest else []
    result = mlc(served_deeplab, "predict", "deeplab", served_deeplab.paths.configs / "test_image.png",
                 "--label", "beta", "--out", tmp_path, *where)
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert line == "Error: deeplab has no beta; labels: canary → 3, stable → 2"
    assert not list(tmp_path.iterdir())
