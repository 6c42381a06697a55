"""examples/deeplab_client.py, run as a script against the session mlc-model-server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.deeplab_runs import ServedDeeplab
from tests.support.homes import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_classic_client_gets_the_same_mask_as_mlc_predict(
    served_deeplab: ServedDeeplab, python: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    photo = served_deeplab.paths.configs / "test_image.png"
    mask_file = tmp_path / "mask.png"
    run = subprocess.run(
        [python, str(REPO_ROOT / "examples" / "deeplab_client.py"), str(photo),
         "--server", served_deeplab.grpc, "--label", "stable", "--out", str(mask_file)],
        env=subprocess_env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("sync:   version 2, mask 64x48, classes [")
    assert lines[1] == "future: same mask as sync: True"
    assert lines[2] == f"mask:   {mask_file}"

    from lifecycle import api

    mine = api.predict("deeplab", [photo], label="stable", out=tmp_path / "mlc", paths=served_deeplab.paths)
    theirs = Image.open(mask_file)
    assert theirs.mode == "P" and theirs.size == (64, 48)
    np.testing.assert_array_equal(np.asarray(theirs), np.asarray(Image.open(mine.images[0].mask)))
    assert theirs.getpalette() == Image.open(mine.images[0].mask).getpalette()
