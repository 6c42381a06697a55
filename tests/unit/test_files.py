"""Atomic writes: whole files only, ordinary permissions, no temp files left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lifecycle.store.files import atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_whole_file_with_ordinary_mode(tmp_path: Path) -> None:
    target = tmp_path / "registry.yaml"
    atomic_write_text(target, "a: 1\n")
    atomic_write_text(target, "a: 2\n")
    assert target.read_text() == "a: 2\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["registry.yaml"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "models.config"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["models.config"]
