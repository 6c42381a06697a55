"""scripts/byo.sh end to end: docs/byo.md's three bring-your-own cases, from a copy of the repository's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.store.config import Paths
from lifecycle.store.registry import load as load_registry
from tests.support.homes import REPO_ROOT
from tests.support.ports import free_ports

pytestmark = pytest.mark.e2e


def test_byo_script_registers_promotes_and_predicts_all_three(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    home = tmp_path / "byo"
    grpc_port, rest_port = free_ports(2)
    env = dict(subprocess_env, MLC_BYO_NO_VENV="1", PYTHON=sys.executable, MLC_BYO_HOME=str(home),
               MLC_BYO_GRPC_PORT=str(grpc_port), MLC_BYO_REST_PORT=str(rest_port), MLC_BYO_EPOCHS="1")
    r = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "byo.sh")], env=env, capture_output=True, text=True,
                       timeout=900, check=False)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    out = r.stdout
    assert "Registered exports/keras_segmenter (savedmodel-tf2) as segmenter version 1, eval mIoU" in out
    assert "Registered exports/seed_deeplab (savedmodel-tf1) as seed version 1, eval mIoU" in out
    assert "as shapes version 2, eval accuracy" in out
    registry = load_registry(Paths(home)).to_dict()["models"]
    assert {m: registry[m]["stable"] for m in ("segmenter", "seed", "shapes")} == {"segmenter": 1, "seed": 1, "shapes": 2}
    for model in ("segmenter", "seed"):
        assert registry[model]["versions"][0]["report"]["metrics"]["eval"]["source"] == "voc"
        own = home / "model_repo" / model / "1" / "assets.extra" / "mlc_report.json"  # the whole report
        assert "per_class_iou" in json.loads(own.read_text())["version"]["report"]["metrics"]
        assert (home / "out" / model / "test_image.v1.mask.png").is_file()  # stable is version 1
        assert (home / "out" / model / "test_image.v1.overlay.png").is_file()
    assert registry["shapes"]["versions"][1]["report"]["metrics"]["eval"]["source"] == "folder"
    assert "answered by version 2" in out and "Top classes of A and B" in out
    assert not (home / ".mlc" / "servers").exists() or not any((home / ".mlc" / "servers").iterdir())
    assert os.environ.get("MLC_HOME") != str(home)
