"""Finding and fingerprinting checkpoints (lifecycle.build.checkpoints: no TensorFlow needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lifecycle.build import checkpoints
from lifecycle.errors import CheckpointError
from tests.conftest import TinyRun


@pytest.fixture
def run_copy(tiny_run: TinyRun, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, dst)
    return dst


def test_run_folder_means_its_latest_checkpoint(tiny_run: TinyRun) -> None:
    ref = checkpoints.resolve(tiny_run.run_dir)
    assert ref.prefix == tiny_run.prefixes[-1] and ref.step == tiny_run.steps[-1]
    assert [f.name for f in ref.files] == ["ckpt-60.index", "ckpt-60.data-00000-of-00001"]
    assert ref.digest.startswith("sha256:")


def test_prefix_and_file_names_resolve(tiny_run: TinyRun) -> None:
    first = tiny_run.prefixes[0]
    for given in (first, Path(str(first) + ".index"), Path(str(first) + ".data-00000-of-00001")):
        ref = checkpoints.resolve(given)
        assert ref.prefix == first and ref.step == tiny_run.steps[0]


def test_digest_is_content_not_location(run_copy: Path, tiny_run: TinyRun, tmp_path: Path) -> None:
    original = checkpoints.resolve(tiny_run.prefixes[-1]).digest
    assert checkpoints.resolve(run_copy).digest == original
    other = tmp_path / "renamed"
    other.mkdir()
    for f in run_copy.glob("ckpt-60.*"):
        shutil.copy(f, other / f.name.replace("ckpt-60", "model.ckpt-60"))
    assert checkpoints.resolve(other / "model.ckpt-60").digest == original
    assert checkpoints.resolve(tiny_run.prefixes[0]).digest != original


def test_folder_without_state_file_uses_highest_step(run_copy: Path) -> None:
    (run_copy / "checkpoint").unlink()
    assert checkpoints.resolve(run_copy).step == 60


def test_state_file_with_a_stale_absolute_path(run_copy: Path) -> None:
    (run_copy / "checkpoint").write_text('model_checkpoint_path: "/gone/elsewhere/ckpt-40"\n')
    assert checkpoints.resolve(run_copy).step == 40


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d: [f.unlink() for f in d.glob("ckpt-60.data-*")], "no data file"),
        (lambda d: (d / "ckpt-60.index").unlink(), "ckpt-60.index is missing"),
        (lambda d: (d / "checkpoint").write_text("garbage\n"), "no model_checkpoint_path"),
        (lambda d: (d / "ckpt-60.index").write_bytes((d / "ckpt-60.index").read_bytes()[:100]), "corrupt or truncated"),
        (lambda d: (d / "ckpt-60.data-00000-of-00001").rename(d / "ckpt-60.data-00000-of-00002"), "incomplete"),
    ],
)
def test_damaged_checkpoints_are_refused(run_copy: Path, damage, words: str) -> None:
    damage(run_copy)
    with pytest.raises(CheckpointError, match=words):
        checkpoints.resolve(run_copy)


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoints.resolve(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        checkpoints.resolve(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        checkpoints.resolve(tmp_path / "file.txt")
