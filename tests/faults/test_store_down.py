"""The object store goes away mid-operation: SeaweedFS is SIGKILLed while an mlc child is held at
a failpoint inside the operation, then started again on the same ports and data.

Every cell: the command fails with one line naming the store's endpoint; no reader (the
registry, the store's listing) and no server sees a partial version; the server that stays up
answers every label-addressed request; once the store is back, the next command completes the
operation or cleans up what it left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lifecycle.store import journal, registry
from tests.support.faults import FAULT_PAUSE_S, Mlc, Store, child_env, one_line, report_load, run_mlc, serve
from tests.support.homes import byo_home
from tests.support.rollout_support import MODEL, Load, make_home

pytestmark = pytest.mark.e2e


def bucket_of(remote: dict[str, str]) -> str:
    return remote["MLC_REPOSITORY"][len("s3://"):].split("/")[0]


def test_store_killed_during_register_upload(
    tmp_path: Path, built: Path, store: Store, remote: dict[str, str], shapes_run: Any,
    subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = byo_home(tmp_path / "home", "shapes")
    make_home(paths.home, built, [1], stable=1)
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        with Load(server.grpc_address, allowed={1}) as load:
            mlc = Mlc(env, tmp_path / "points.log").start(
                "register", str(shapes_run.run_dir), "--model", "shapes", points=f"store:publish=pause:{FAULT_PAUSE_S}")
            mlc.reached("store:publish")  # every file uploaded, the manifest not written
            store.kill()
            mlc.release()
            code = mlc.wait()
            line = one_line(mlc.err)
            assert code == 1, mlc.out + mlc.err
            assert store.endpoint in line, line
            assert not list(paths.model_dir("shapes").glob(".staging-*")), "the staging folder stays"
            store.restart(bucket_of(remote))
            # No reader sees version 1 of shapes: no manifest, no registry record.
            assert paths.store.version_numbers("shapes") == []
            assert not registry.load(paths).model("shapes", create=True).versions
            assert [left.number for left in paths.store.leftovers("shapes")] == [1]
            # The next gc removes the abandoned upload (a new register would take version 2).
            code, out, err = run_mlc(env, "gc", "--grace", "0")
            assert code == 0, out + err
            assert "deleted shapes incomplete upload 1" in out, out
            assert paths.store.leftovers("shapes") == [] and paths.store.version_numbers("shapes") == []
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


def test_store_killed_during_promote_registry_commit(
    tmp_path: Path, built: Path, store: Store, remote: dict[str, str],
    subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        with Load(server.grpc_address, allowed={1, 2}) as load:
            mlc = Mlc(env, tmp_path / "points.log").start(
                "promote", MODEL, "2", "--timeout", "60", points=f"registry:pages=pause:{FAULT_PAUSE_S}")
            mlc.reached("registry:pages")  # the commit's pages are written, the head is not
            store.kill()
            mlc.release()
            code = mlc.wait()
            line = one_line(mlc.err)
            assert code == 1, mlc.out + mlc.err
            assert store.endpoint in line, line
            store.restart(bucket_of(remote))
            # The registry still says stable 1; the journal says the promote stopped in its commit.
            assert registry.load(paths).model(MODEL).stable == 1
            pending = journal.load(paths)
            assert pending is not None and pending.last().startswith("commit"), pending
            code, out, err = run_mlc(env, "status", MODEL)
            assert "interrupted rollout is pending" in out + err, out + err
            # The next promote recovers it (completes the commit) before anything else.
            code, out, err = run_mlc(env, "promote", MODEL, "2", "--timeout", "60")
            assert code == 0, out + err
            assert "recover" in (out + err).lower(), out + err
            rec = registry.load(paths).model(MODEL)
            assert rec.stable == 2 and journal.load(paths) is None
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


def test_store_killed_during_gc_deletes(
    tmp_path: Path, built: Path, store: Store, remote: dict[str, str],
    subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2, 3, 4], stable=4)
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        with Load(server.grpc_address, allowed={4}) as load:
            mlc = Mlc(env, tmp_path / "points.log").start(
                "gc", MODEL, "--keep", "1", points=f"gc:deleted=pause:{FAULT_PAUSE_S}")
            mlc.reached("gc:deleted")  # version 1 is deleted, 2 and 3 not yet, nothing recorded
            store.kill()
            mlc.release()
            code = mlc.wait()
            line = one_line(mlc.err)
            assert code == 1, mlc.out + mlc.err
            assert store.endpoint in line, line
            store.restart(bucket_of(remote))
            assert paths.store.version_numbers(MODEL) == [2, 3, 4]
            code, out, err = run_mlc(env, "status", MODEL)
            assert "interrupted mlc gc" in out + err, out + err
            # The next gc finishes: versions 2 and 3 go, and the registry forgets 1 with them.
            code, out, err = run_mlc(env, "gc", MODEL, "--keep", "1")
            assert code == 0, out + err
            assert "interrupted" in out, out
            assert paths.store.version_numbers(MODEL) == [4]
            rec = registry.load(paths).model(MODEL)
            assert [v.version for v in rec.versions] == [4]
            assert sorted(e.from_version or 0 for e in rec.history if e.action == "gc") == [1, 2, 3]
            code, out, err = run_mlc(env, "status", MODEL)
            assert "interrupted mlc gc" not in out + err, out + err
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


def test_store_killed_during_sync_download(
    tmp_path: Path, built: Path, store: Store, remote: dict[str, str],
    subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    with registry.transaction(paths) as reg:
        reg.model(MODEL).canary = 2  # the serving config needs versions 1 and 2
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    folder = tmp_path / "replica-disk"
    try:
        with Load(server.grpc_address, allowed={1}) as load:
            mlc = Mlc(env, tmp_path / "points.log").start(
                "sync", "--to", str(folder), points=f"store:copy=pause:{FAULT_PAUSE_S}")
            mlc.reached("store:copy")  # version 1 downloaded and verified, not renamed into place
            store.kill()
            mlc.release()
            code = mlc.wait()
            line = one_line(mlc.err)
            assert code == 1, mlc.out + mlc.err
            assert store.endpoint in line, line
            # What a server polling the folder sees: complete versions only, no config naming a missing one.
            names = sorted(p.name for p in (folder / MODEL).iterdir()) if (folder / MODEL).exists() else []
            assert all(n.isdigit() or n.startswith(".") for n in names), names
            assert "2" not in names and not (folder / "models.config").exists(), names
            store.restart(bucket_of(remote))
            code, out, err = run_mlc(env, "sync", "--to", str(folder))
            assert code == 0, out + err
            assert sorted(p.name for p in (folder / MODEL).iterdir()) == ["1", "2"]
            assert (folder / "models.config").exists()
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []
