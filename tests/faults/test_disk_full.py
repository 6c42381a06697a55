"""The disk fills mid-operation: the mlc home sits on a tmpfs of a few MiB, filled to the last
bytes before the command (or, for an export, while the command is held at a failpoint).

Every cell: the command fails with one line that names ENOSPC; no staging or temp file stays;
the registry, the journal and the published versions are byte for byte as before; the server
that stays up answers every label-addressed request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle.store.config import Paths
from tests.support import faults
from tests.support.faults import child_env, fill, one_line, report_load, run_mlc, serve
from tests.support.homes import byo_home, tree_state
from tests.support.rollout_support import MODEL, Load, make_home

REASON = faults.small_fs_unavailable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=f"disk-full cells: {REASON}")]


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted at the end."""
    with faults.small_fs("16m") as where:
        yield where


def enospc(line: str) -> None:
    assert "ENOSPC" in line or "No space left on device" in line, line


def repo_state(paths: Paths) -> dict[str, str]:
    """The repository (registry, journal, versions) byte for byte, and the serving config.

    A folder with no file in it, at any depth, does not count: a failed register may leave
    ``model_repo/<model>/`` (where its staging folder was), or ``registry/<model>/attempts/``
    (where the write of its failed attempt ran out of space), with nothing in them, which no
    reader or server takes for a version or a record.
    """
    state = {k: v for k, v in tree_state(paths.model_repo).items()
             if v != "dir" or any(p.is_file() for p in (paths.model_repo / k).rglob("*"))}
    state["models.config"] = paths.serving_config.read_text() if paths.serving_config.exists() else ""
    return state


def hpt_home(root: Path, built: Path, *definitions: str) -> Paths:
    paths = byo_home(root, *definitions) if definitions else Paths(root.resolve())
    return make_home(paths.home, built, [1, 2], stable=1)


def test_disk_full_during_export(
    small_disk: Path, built: Path, shapes_run: Any, subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = hpt_home(small_disk / "home", built, "shapes")
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        before = repo_state(paths)
        with Load(server.grpc_address, allowed={1}) as load:
            fill(small_disk, leave=64 * 1024)  # room for the registry's reads, not for a SavedModel
            code, out, err = run_mlc(env, "register", str(shapes_run.run_dir), "--model", "shapes")
            (small_disk / ".filler").unlink()
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert code == 1, out + err
    enospc(one_line(err))
    assert not list(paths.model_repo.rglob(".staging-*")), "staging left behind"
    assert repo_state(paths) == before
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


def test_disk_full_during_a_registry_write(
    small_disk: Path, built: Path, subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = hpt_home(small_disk / "home", built)
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        before = repo_state(paths)
        with Load(server.grpc_address, allowed={1}) as load:
            fill(small_disk)
            code, out, err = run_mlc(env, "pin", MODEL, "2")
            (small_disk / ".filler").unlink()
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert code == 1, out + err
    enospc(one_line(err))
    assert repo_state(paths) == before
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


def test_disk_full_during_the_journal_write(
    small_disk: Path, built: Path, subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = hpt_home(small_disk / "home", built)
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        before = repo_state(paths)
        with Load(server.grpc_address, allowed={1}) as load:
            fill(small_disk)
            code, out, err = run_mlc(env, "promote", MODEL, "2", "--timeout", "30")
            (small_disk / ".filler").unlink()
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert code == 1, out + err
    enospc(one_line(err))
    assert repo_state(paths) == before
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


@pytest.mark.e2e
def test_disk_full_during_predict_pictures(
    small_disk: Path, served_deeplab: Any, subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = served_deeplab.paths
    env = child_env(subprocess_env, paths)
    out_dir = small_disk / "pictures"
    out_dir.mkdir()
    before = repo_state(paths)
    with faults.LabelLoad(served_deeplab.grpc, faults.deeplab_request()) as load:
        fill(small_disk)
        code, out, err = run_mlc(env, "predict", "deeplab", str(paths.configs / "test_image.png"), "--label", "stable",
                                 "--out", str(out_dir))
        (small_disk / ".filler").unlink()
    counted = report_load(record_property, load)
    assert code == 1, out + err
    enospc(one_line(err))
    assert list(out_dir.iterdir()) == [], "a partial picture stays"
    assert repo_state(paths) == before
    assert counted.requests > 0 and counted.failed == []
