"""The Store contract, run against every implementation listed in tests/support/stores.py.

Documents: create only if absent, replace only at the generation read, a stale generation is
refused and changes nothing; eight processes incrementing one counter by compare-and-swap lose
no update. Versions: eight processes claiming numbers never share one; a publish is visible
whole or not at all, even when its process is killed in the middle. Leases exclude other
processes. The fixtures ``store`` and ``store_factory`` come from tests/support/stores.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from lifecycle import failpoints
from lifecycle.errors import LockTimeout, StaleGeneration, VersionNotFound
from lifecycle.store import cas
from lifecycle.store.base import REGISTRY_LEASE, Store
from lifecycle.store.files import INCOMING, incoming_folder
from tests.support.stores import StoreFactory

PROCESSES = 8
FORK = multiprocessing.get_context("fork")


def run_children(target, args_of, timeout: float = 120.0) -> list[int | None]:
    """Fork PROCESSES children running ``target(*args_of(i))``; return their exit codes."""
    procs = [FORK.Process(target=target, args=args_of(i)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    return [p.exitcode for p in procs]


# --- documents -------------------------------------------------------------------------------


def test_create_only_if_absent(store: Store) -> None:
    assert store.read("journal/rollout.json") is None
    gen = store.write("journal/rollout.json", b"first", None)
    doc = store.read("journal/rollout.json")
    assert doc is not None and doc.data == b"first" and doc.generation == gen
    with pytest.raises(StaleGeneration):
        store.write("journal/rollout.json", b"second", None)
    assert store.read("journal/rollout.json") == doc


def test_replace_at_generation_and_stale_generation_refused(store: Store) -> None:
    g1 = store.write("registry.yaml", b"one", None)
    g2 = store.write("registry.yaml", b"two", g1)
    assert g2 != g1
    assert store.read("registry.yaml").data == b"two"  # type: ignore[union-attr]
    with pytest.raises(StaleGeneration):
        store.write("registry.yaml", b"lost update", g1)
    doc = store.read("registry.yaml")
    assert doc is not None and doc.data == b"two" and doc.generation == g2
    with pytest.raises(StaleGeneration):  # replacing a document that does not exist
        store.write("absent.yaml", b"x", g2)
    assert store.read("absent.yaml") is None


def test_delete_and_keys(store: Store) -> None:
    store.delete("journal/rollout.json")  # absent: not an error
    g = store.write("journal/rollout.json", b"j", None)
    store.write("registry.yaml", b"r", None)
    assert store.keys() == ["journal/rollout.json", "registry.yaml"]
    assert store.keys("journal/") == ["journal/rollout.json"]
    g2 = store.write("journal/rollout.json", b"j2", g)
    with pytest.raises(StaleGeneration):
        store.delete("journal/rollout.json", g)
    assert store.read("journal/rollout.json").data == b"j2"  # type: ignore[union-attr]
    store.delete("journal/rollout.json", g2)
    assert store.read("journal/rollout.json") is None and store.keys() == ["registry.yaml"]


def _increment(factory: StoreFactory, times: int) -> None:
    store = factory()

    def add_one(current: bytes | None) -> bytes:
        count = json.loads(current)["count"] if current is not None else 0
        return json.dumps({"count": count + 1}).encode()

    for _ in range(times):
        cas.update(store, "counter.json", add_one)


def test_concurrent_compare_and_swap_loses_no_update(store_factory: StoreFactory) -> None:
    times = 25
    codes = run_children(_increment, lambda i: (store_factory, times))
    assert codes == [0] * PROCESSES
    doc = store_factory().read("counter.json")
    assert doc is not None and json.loads(doc.data) == {"count": PROCESSES * times}


def test_update_leaves_an_unchanged_document_alone_and_gives_up_when_it_keeps_moving(store: Store) -> None:
    g = store.write("registry.yaml", b"same", None)
    assert cas.update(store, "registry.yaml", lambda cur: cur).generation == g  # type: ignore[union-attr]
    assert cas.update(store, "registry.yaml", lambda cur: None).generation == g  # type: ignore[union-attr]

    def racing(current: bytes | None) -> bytes:
        # Another writer gets in between every read and write of this update.
        doc = store.read("registry.yaml")
        store.write("registry.yaml", (current or b"") + b"+", doc.generation)  # type: ignore[union-attr]
        return b"mine"

    with pytest.raises(StaleGeneration, match="kept changing during 3 attempts"):
        cas.update(store, "registry.yaml", racing, attempts=3)
    assert store.read("registry.yaml").data == b"same+++"  # type: ignore[union-attr]


# --- versions --------------------------------------------------------------------------------


def _claim(factory: StoreFactory, out: str, count: int) -> None:
    store = factory()
    won, number = [], 1
    while len(won) < count:
        if store.claim_version("m", number, f"pid {os.getpid()}"):
            won.append(number)
        number += 1
    Path(out).write_text(json.dumps(won))


def test_claims_from_eight_processes_have_distinct_winners(store_factory: StoreFactory, tmp_path: Path) -> None:
    count = 5
    outs = [tmp_path / f"claims-{i}.json" for i in range(PROCESSES)]
    assert run_children(_claim, lambda i: (store_factory, str(outs[i]), count)) == [0] * PROCESSES
    won = [n for out in outs for n in json.loads(out.read_text())]
    assert sorted(won) == list(range(1, PROCESSES * count + 1))  # every number exactly once
    store = store_factory()
    assert not store.claim_version("m", 1, "late")  # a claimed number is never handed out again
    assert store.version_numbers("m") == []  # claims are not versions


def stage(store: Store, model: str, name: str, payload: bytes) -> Path:
    staged = store.staging_dir(model) / f".staging-test-{name}"
    (staged / "variables").mkdir(parents=True)
    (staged / "saved_model.pb").write_bytes(payload)
    (staged / "variables" / "variables.index").write_bytes(payload * 2)
    return staged


def test_publish_is_whole_and_never_replaces(store_factory: StoreFactory) -> None:
    store = store_factory()
    with pytest.raises(VersionNotFound):
        store.version_path("m", 1)
    assert store.claim_version("m", 1, "test")
    store.publish_version("m", 1, stage(store, "m", "a", b"version one"))
    assert store.version_numbers("m") == [1] and list(store.iter_models()) == ["m"]
    path = store.version_path("m", 1)
    assert (path / "saved_model.pb").read_bytes() == b"version one"
    assert (path / "variables" / "variables.index").read_bytes() == b"version one" * 2
    assert store.read_version_file("m", 1, Path("variables") / "variables.index") == b"version one" * 2
    other = store_factory()  # another client (on S3: another machine, without a copy of the version)
    assert other.read_version_file("m", 1, "saved_model.pb") == b"version one"
    with pytest.raises(OSError):
        other.read_version_file("m", 1, "no-such-file")
    with pytest.raises(VersionNotFound):
        store.read_version_file("m", 2, "saved_model.pb")
    assert not store.claim_version("m", 1, "again")
    other = stage(store, "m", "b", b"impostor")
    with pytest.raises(StaleGeneration):
        store.publish_version("m", 1, other)
    assert (store.version_path("m", 1) / "saved_model.pb").read_bytes() == b"version one"


def _publish_killed(factory: StoreFactory) -> None:
    store = factory()
    os.environ[failpoints.ENV] = "store:publish"
    store.publish_version("m", 2, stage(store, "m", "killed", b"never visible"))


def test_a_publish_killed_midway_publishes_nothing(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.claim_version("m", 1, "test") and store.claim_version("m", 2, "test")
    store.publish_version("m", 1, stage(store, "m", "a", b"version one"))
    child = FORK.Process(target=_publish_killed, args=(store_factory,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert store.version_numbers("m") == [1]
    with pytest.raises(VersionNotFound):
        store.version_path("m", 2)
    assert not store.claim_version("m", 2, "retry")  # the dead writer's number stays taken
    assert store.claim_version("m", 3, "next")
    store.publish_version("m", 3, stage(store, "m", "c", b"version three"))
    assert store.version_numbers("m") == [1, 3]


def _copy_killed(factory: StoreFactory, target: Path) -> None:
    os.environ[failpoints.ENV] = "store:copy"
    factory().copy_version("m", 1, target)


def test_a_copy_killed_midway_is_swept_by_the_next_and_a_live_one_is_not(store_factory: StoreFactory, tmp_path: Path) -> None:
    store = store_factory()
    assert store.claim_version("m", 1, "test")
    store.publish_version("m", 1, stage(store, "m", "a", b"version one"))
    target = tmp_path / "served" / "m"
    child = FORK.Process(target=_copy_killed, args=(store_factory, target))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    (left,) = [p.name for p in target.iterdir() if p.is_dir()]  # the dead copy's incoming folder, nothing at 1/
    assert left.startswith(INCOMING) and (target / left / "saved_model.pb").is_file()
    with incoming_folder(target / "7") as live:  # a copy in progress in this process
        copied = store.copy_version("m", 1, target)
        assert (copied / "saved_model.pb").read_bytes() == b"version one"
        assert sorted(p.name for p in target.iterdir() if p.is_dir()) == sorted(["1", live.name])
    assert sorted(p.name for p in target.iterdir()) == ["1"]  # no lock file or folder left behind


def test_delete_version(store: Store) -> None:
    assert store.claim_version("m", 1, "test")
    store.publish_version("m", 1, stage(store, "m", "a", b"one"))
    store.delete_version("m", 1)
    assert store.version_numbers("m") == []
    assert not store.claim_version("m", 1, "reuse")  # numbers are never reused


# --- leases ----------------------------------------------------------------------------------


def _hold_lease(factory: StoreFactory, held, release) -> None:
    with factory().lease(REGISTRY_LEASE, 30):
        held.set()
        release.wait(60)


def test_a_lease_excludes_other_processes(store_factory: StoreFactory) -> None:
    held, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_hold_lease, args=(store_factory, held, release))
    child.start()
    try:
        assert held.wait(60)
        with pytest.raises(LockTimeout), store_factory().lease(REGISTRY_LEASE, 0.2):
            pass
    finally:
        release.set()
        child.join(60)
    assert child.exitcode == 0
    with store_factory().lease(REGISTRY_LEASE, 5):  # free again
        pass
