"""Staging folders and orphan adoption, without TensorFlow (unit tests on tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock

from lifecycle.register import publish
from lifecycle.store import registry
from lifecycle.store.config import Paths


def fake_version(paths: Paths, number: int, digest: str, record: bool = True) -> Path:
    d = paths.version_dir("deeplab", number)
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"pb")
    if record:
        own = {
            "checkpoint": {"digest": digest, "path": f"ckpt/r/ckpt-{number}", "step": number, "tf_version": "2.21.0",
                           "created": "2026-01-01T00:00:00+00:00", "user": "u"},
            "version": {"checkpoint_digest": digest, "checkpoint": f"ckpt/r/ckpt-{number}", "step": number,
                        "validated": True, "report": {"golden": {"digest": "sha256:g"}},
                        "created": "2026-01-01T00:00:01+00:00", "user": "u"},
        }
        registry.version_record_file(d).parent.mkdir(parents=True)
        registry.version_record_file(d).write_text(json.dumps(own))
    return d


def test_orphans_with_a_record_are_adopted_others_left_alone(tmp_path: Path) -> None:
    paths = Paths.from_env(tmp_path)
    fake_version(paths, 1, "sha256:a")
    fake_version(paths, 2, "sha256:b", record=False)  # not mlc's: never adopted, never reused
    fake_version(paths, 3, "sha256:c")
    registry.version_record_file(paths.version_dir("deeplab", 3)).write_text("{not json")
    with registry.transaction(paths) as reg:
        rec = reg.model("deeplab")
        assert [v.version for v in rec.versions] == [1]
        # The registry keeps the report's summary; the record file beside the version keeps it all.
        assert rec.versions[0].report == {"golden": {"digest": "sha256:g"}, "full": "assets.extra/mlc_report.json"}
        assert registry.full_report(paths, "deeplab", rec.versions[0]) == {"golden": {"digest": "sha256:g"}}
        assert rec.versions[0].validated
        assert [c.digest for c in rec.checkpoints] == ["sha256:a"]
        assert registry.allocate_version(paths, rec) == 4
    assert registry.load(paths).model("deeplab").version(1).checkpoint == "ckpt/r/ckpt-1"
    # Adopting again changes nothing (and does not rewrite the registry).
    before = paths.registry_file.read_bytes()
    with registry.transaction(paths):
        pass
    assert paths.registry_file.read_bytes() == before


def test_clean_stale_staging_spares_live_ones(tmp_path: Path) -> None:
    model_dir = tmp_path / "deeplab"
    (model_dir / ".staging-1-dead" / "variables").mkdir(parents=True)
    (model_dir / ".staging-1-dead.lock").touch()
    (model_dir / ".staging-2-nodir.lock").touch()
    (model_dir / "1").mkdir()
    with publish.Staging(model_dir) as live:
        assert live.dir.is_dir() and live.lock_path.is_file()
        removed = publish.clean_stale_staging(model_dir)
        assert removed == [".staging-1-dead", ".staging-2-nodir"]
        assert sorted(p.name for p in model_dir.iterdir()) == sorted(["1", live.dir.name, live.lock_path.name])
    # Leaving the context removes the folder and the lock file.
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]


def test_a_staging_lock_held_elsewhere_is_respected(tmp_path: Path) -> None:
    model_dir = tmp_path / "deeplab"
    (model_dir / ".staging-9-other").mkdir(parents=True)
    holder = FileLock(str(model_dir / ".staging-9-other.lock"))
    holder.acquire(timeout=0)
    try:
        assert publish.clean_stale_staging(model_dir) == []
    finally:
        holder.release()
    assert publish.clean_stale_staging(model_dir) == [".staging-9-other"]
    assert list(model_dir.iterdir()) == []
