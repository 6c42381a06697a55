"""Networks named by import paths: a Keras builder end to end, and bad builders refused cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.errors import ConfigError
from lifecycle.networks import builders as networks
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.homes import REPO_ROOT, tree_state

pytestmark = pytest.mark.e2e


def set_network(paths: Paths, network: dict, serving: str | None = None) -> None:
    file = paths.definition_file("deeplab")
    data = yaml.safe_load(file.read_text())
    data["network"] = network
    if serving is not None:
        data["serving"] = serving
    file.write_text(yaml.safe_dump(data, sort_keys=False))


def test_aliases_and_plans_need_no_tensorflow() -> None:
    p = networks.plan({"builder": "deeplab_v3", "backbone": "small"}, None, "x: network")
    assert p.builder == "lifecycle.networks.deeplab:build"
    assert p.serving == "lifecycle.networks.deeplab:serve"
    assert p.kwargs == {"backbone": "small"} and p.checkpoint_root == "model"
    with pytest.raises(ConfigError, match="is not an import path 'module:function'"):
        networks.plan({"builder": "unet"}, None, "x: network")
    with pytest.raises(ConfigError, match="x: serving: 'a.b' is not an import path"):
        networks.plan({"builder": "a:b"}, "a.b", "x: network")


def test_keras_builder_by_import_path_registers(make_home, tmp_path: Path) -> None:
    import tensorflow as tf

    from tests.support import usernets

    paths = make_home()
    set_network(paths, {"builder": "tests.support.usernets:build_keras_segmenter", "num_classes": 21, "width": 8},
                "tests.support.usernets:serve_segmenter")
    net = usernets.build_keras_segmenter(21, 8, seed=3)
    prefix = tf.train.Checkpoint(model=net).write(str(tmp_path / "run" / "ckpt-5"))
    r = api.register(prefix, paths=paths)
    assert r.version == 1 and r.validated and not r.reused and r.step == 5
    assert r.report["network"]["builder"] == "tests.support.usernets:build_keras_segmenter"
    assert r.report["checks"]["parity"].startswith("equal to the checkpoint model's mask")
    # A checkpoint of another width does not restore into the definition's network.
    other = tf.train.Checkpoint(model=usernets.build_keras_segmenter(21, 4)).write(str(tmp_path / "o" / "ckpt-1"))
    before = tree_state(paths.home)
    res = CliRunner().invoke(app, ["register", other], env={"MLC_HOME": str(paths.home)})
    assert res.exit_code == 1 and "does not match the network tests.support.usernets:build_keras_segmenter" in res.stderr
    assert tree_state(paths.home) == before


BAD = {
    "builder that does not import": (
        {"builder": "nosuch_pkg.nets:build"}, None, ("network.builder: 'nosuch_pkg.nets:build' does not import: "
                                                     "ModuleNotFoundError: No module named 'nosuch_pkg'")),
    "builder attribute missing": (
        {"builder": "tests.support.usernets:nope"}, None, "module 'tests.support.usernets' has no 'nope'"),
    "builder returning the wrong type": (
        {"builder": "tests.support.usernets:bad_returns_dict"}, "tests.support.usernets:serve_segmenter",
        "returned a builtins.dict, not a tf.keras.Model or tf.Module"),
    "builder with unknown keyword": (
        {"builder": "tests.support.usernets:build_keras_segmenter", "colour": "red"},
        "tests.support.usernets:serve_segmenter", "failed: TypeError"),
    "serving that does not import": (
        {"builder": "deeplab_v3", "backbone": "small"}, "tests.support.usernets:nope",
        "serving: 'tests.support.usernets:nope' does not import"),
    "serving returning the wrong type": (
        {"builder": "deeplab_v3", "backbone": "small"}, "tests.support.usernets:bad_serve_returns_string",
        "gave a str for signature 'predict_images'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_builder_is_one_line_and_changes_nothing(case: str, registered_home: Paths,
                                                     variant_checkpoints: list[Path]) -> None:
    network, serving, words = BAD[case]
    set_network(registered_home, network, serving)
    before = tree_state(registered_home.home)
    r = CliRunner().invoke(app, ["register", str(variant_checkpoints[0])], env={"MLC_HOME": str(registered_home.home)})
    assert r.exit_code == 1, (r.output, r.exception)
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and words in line, line
    assert tree_state(registered_home.home) == before
    assert [v.version for v in registry.load(registered_home).model("deeplab").versions] == [1, 2, 3]


def test_shipped_definition_keeps_the_alias() -> None:
    data = yaml.safe_load((REPO_ROOT / "configs" / "deeplab.yaml").read_text())
    assert networks.plan(data["network"], data.get("serving"), "n").builder == "lifecycle.networks.deeplab:build"
