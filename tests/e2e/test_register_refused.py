"""Bad input to mlc register: one clear line on stderr, non-zero exit, home byte-identical."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.store.config import Paths
from tests.support.deeplab_runs import TinyRun
from tests.support.homes import tree_state

pytestmark = pytest.mark.e2e


def copy_checkpoint(tiny_run: TinyRun, dst: Path, step: int = 60) -> Path:
    dst.mkdir(parents=True)
    for f in tiny_run.run_dir.glob(f"ckpt-{step}.*"):
        shutil.copy(f, dst / f.name)
    return dst / f"ckpt-{step}"


def flip_byte(prefix: Path) -> Path:
    data = Path(str(prefix) + ".data-00000-of-00001")
    b = bytearray(data.read_bytes())
    b[len(b) // 3] ^= 0xFF
    data.write_bytes(bytes(b))
    return prefix


def truncate(path: Path, keep: float) -> None:
    b = path.read_bytes()
    path.write_bytes(b[: int(len(b) * keep)])


def other_architecture(root: Path, **spec: object) -> Path:
    import tensorflow as tf

    from lifecycle.networks import deeplab

    prefix = root / "other" / "ckpt-1"
    tf.train.Checkpoint(model=deeplab.create(deeplab.NetworkSpec(**spec))).write(str(prefix))
    return prefix


def foreign_checkpoint(root: Path) -> Path:
    import tensorflow as tf

    prefix = root / "foreign" / "ckpt-7"
    tf.train.Checkpoint(weights=tf.Variable([1.0, 2.0])).write(str(prefix))
    return prefix


# Each case: (prepare(home, tiny_run, scratch) -> CLI args, exit code, words in the error line).
Case = tuple[Callable[[Paths, TinyRun, Path], list[str]], int, str]
CASES: dict[str, Case] = {
    "missing path": (lambda h, t, s: ["register", str(s / "nope")], 1, "no such checkpoint"),
    "folder without checkpoint": (
        lambda h, t, s: (s.joinpath("empty").mkdir(), ["register", str(s / "empty")])[1], 1, "no checkpoint in"),
    "truncated index": (
        lambda h, t, s: (truncate(Path(str(p := copy_checkpoint(t, s / "ti")) + ".index"), 0.5), ["register", str(p)])[1],
        1, "corrupt or truncated"),
    "truncated data": (
        lambda h, t, s: (truncate(Path(str(p := copy_checkpoint(t, s / "td")) + ".data-00000-of-00001"), 0.6),
                         ["register", str(p)])[1],
        1, "corrupt or truncated"),
    "corrupt data": (lambda h, t, s: ["register", str(flip_byte(copy_checkpoint(t, s / "cd")))], 1, "corrupt or truncated"),
    "other architecture (classes)": (
        lambda h, t, s: ["register", str(other_architecture(s, num_classes=5))], 1,
        "does not match the small DeepLab-v3 of deeplab.yaml: 57 network variables in the checkpoint, 57 in the network; "
        "shape model/classifier/bias [5] vs [21]"),
    "other architecture (depth)": (
        lambda h, t, s: ["register", str(other_architecture(s, aspp_depth=32))], 1, "does not match"),
    "foreign checkpoint": (lambda h, t, s: ["register", str(foreign_checkpoint(s))], 1, "0 network variables in the checkpoint"),
    "unknown model": (lambda h, t, s: ["register", str(t.run_dir), "--model", "nosuch"], 1, "unknown model 'nosuch'"),
    "model name with path characters": (
        lambda h, t, s: ["register", str(t.run_dir), "--model", "../deeplab"], 2, "invalid model name '../deeplab'"),
    "malformed registry": (
        lambda h, t, s: (h.registry_file.write_text("schema: 1\nmodels:\n  deeplab: [unclosed\n"), ["register", str(t.run_dir)])[1],
        1, "registry.yaml:4"),
    "malformed definition": (
        lambda h, t, s: (h.definition_file("deeplab").write_text(
            h.definition_file("deeplab").read_text().replace("key: predict_images", "key: [predict_images")),
            ["register", str(t.run_dir)])[1],
        1, "deeplab.yaml:"),
    "definition with a wrong signature": (
        lambda h, t, s: (h.definition_file("deeplab").write_text(
            h.definition_file("deeplab").read_text().replace("method: tensorflow/serving/predict", "method: tensorflow/serving/regress")),
            ["register", str(t.run_dir)])[1],
        1, "regress signature 'predict_images' needs exactly one string input"),
    "missing test image": (
        lambda h, t, s: ((h.configs / "test_image.png").unlink(), ["register", str(t.run_dir)])[1], 1, "test image not found"),
    "test image that is not an image": (
        lambda h, t, s: ((h.configs / "test_image.png").write_text("<html>"), ["register", str(t.run_dir)])[1],
        1, "is not a readable image"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_input_changes_nothing(case: str, registered_home: Paths, tiny_run: TinyRun, tmp_path: Path) -> None:
    prepare, code, words = CASES[case]
    # Input errors are found before the same-content shortcut, so registering the (already
    # registered) run folder must still be refused when the input around it is bad.
    args = prepare(registered_home, tiny_run, tmp_path)
    before = tree_state(registered_home.home)
    r = CliRunner().invoke(app, args, env={"MLC_HOME": str(registered_home.home)})
    assert r.exit_code == code, (r.output, r.exception)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: ") and words in lines[0], lines[0]
    assert tree_state(registered_home.home) == before
