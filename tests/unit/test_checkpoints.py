"""Finding and fingerprinting checkpoints (lifecycle.register.checkpoints: files only, no TensorFlow).

The run folders are written by the simulated trainer of tests/support/trainer_sim.py, whose files
pass the same checks as TensorFlow's; real checkpoints are resolved in the e2e register tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lifecycle.errors import CheckpointError
from lifecycle.register import checkpoints
from tests.support.trainer_sim import SimTrainer

STEPS = (20, 40, 60)


@pytest.fixture
def run(tmp_path: Path) -> SimTrainer:
    """A run folder with checkpoints ckpt-20, ckpt-40, ckpt-60 and its state file naming ckpt-60."""
    trainer = SimTrainer(tmp_path / "run")
    for step in STEPS:
        trainer.write(step)
    return trainer


def test_run_folder_means_its_latest_checkpoint(run: SimTrainer) -> None:
    ref = checkpoints.resolve(run.run_dir)
    assert ref.prefix == run.prefix(60) and ref.step == 60
    assert [f.name for f in ref.files] == ["ckpt-60.index", "ckpt-60.data-00000-of-00001"]
    assert ref.digest == run.digests["ckpt-60"] and ref.digest.startswith("sha256:")


def test_prefix_and_file_names_resolve(run: SimTrainer) -> None:
    first = run.prefix(20)
    for given in (first, Path(str(first) + ".index"), Path(str(first) + ".data-00000-of-00001")):
        ref = checkpoints.resolve(given)
        assert ref.prefix == first and ref.step == 20


def test_digest_is_content_not_location(run: SimTrainer, tmp_path: Path) -> None:
    original = checkpoints.resolve(run.prefix(60)).digest
    other = tmp_path / "renamed"
    other.mkdir()
    for f in run.run_dir.glob("ckpt-60.*"):
        shutil.copy(f, other / f.name.replace("ckpt-60", "model.ckpt-60"))
    assert checkpoints.resolve(other / "model.ckpt-60").digest == original
    assert checkpoints.resolve(run.prefix(20)).digest != original


def test_folder_without_state_file_uses_highest_step(run: SimTrainer) -> None:
    (run.run_dir / "checkpoint").unlink()
    assert checkpoints.resolve(run.run_dir).step == 60


def test_state_file_with_a_stale_absolute_path(run: SimTrainer) -> None:
    (run.run_dir / "checkpoint").write_text('model_checkpoint_path: "/gone/elsewhere/ckpt-40"\n')
    assert checkpoints.resolve(run.run_dir).step == 40


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d: [f.unlink() for f in d.glob("ckpt-60.data-*")], "no data file"),
        (lambda d: (d / "ckpt-60.index").unlink(), "ckpt-60.index is missing"),
        (lambda d: (d / "checkpoint").write_text("garbage\n"), "no model_checkpoint_path"),
        (lambda d: (d / "ckpt-60.index").write_bytes((d / "ckpt-60.index").read_bytes()[:-1]), "corrupt or truncated"),
        (lambda d: (d / "ckpt-60.index").write_bytes((d / "ckpt-60.index").read_bytes()[:40]), "corrupt or truncated"),
        (lambda d: (d / "ckpt-60.data-00000-of-00001").rename(d / "ckpt-60.data-00000-of-00002"), "incomplete"),
    ],
)
def test_damaged_checkpoints_are_refused(run: SimTrainer, damage, words: str) -> None:
    damage(run.run_dir)
    with pytest.raises(CheckpointError, match=words):
        checkpoints.resolve(run.run_dir)


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoints.resolve(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        checkpoints.resolve(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        checkpoints.resolve(tmp_path / "file.txt")
