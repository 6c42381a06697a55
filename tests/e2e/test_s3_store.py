"""S3Store against a real SeaweedFS: documents, versions published whole, leases, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lifecycle.errors import (
    BucketNotFound,
    CorruptVersion,
    LockTimeout,
    StaleGeneration,
    StorageAccessDenied,
    StorageUnreachable,
    VersionNotFound,
)
from lifecycle.store.base import Document
from lifecycle.store.s3 import S3Store
from tests.support.seaweed import Seaweed

PREFIX = "team/repo"


def new_store(bucket: str, local: Path, **kwargs: float) -> S3Store:
    """A store as another machine would open it: its own local folder, AWS config from the env."""
    return S3Store(bucket, PREFIX, local, **kwargs)


def stage(store: S3Store, model: str, files: dict[str, bytes]) -> Path:
    """A staged version folder with ``files`` (relative path -> bytes)."""
    folder = store.staging_dir(model) / f".staging-{time.monotonic_ns()}"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


VERSION_FILES = {
    "saved_model.pb": b"graph" * 1000,
    "variables/variables.index": b"index",
    "variables/variables.data-00000-of-00001": os.urandom(300_000),
    "assets.extra/tf_serving_warmup_requests": b"warmup",
}


def object_keys(seaweed: Seaweed, bucket: str) -> list[str]:
    pages = seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


# --- documents -----------------------------------------------------------------------------


def test_documents_create_replace_and_refuse_stale_writes(s3_env: dict, s3_bucket: str, tmp_path: Path) -> None:
    store = new_store(s3_bucket, tmp_path / "a")
    assert store.read("registry.yaml") is None
    g1 = store.write("registry.yaml", b"one", None)
    with pytest.raises(StaleGeneration):
        store.write("registry.yaml", b"other", None)
    g2 = store.write("registry.yaml", b"two", g1)
    with pytest.raises(StaleGeneration):
        store.write("registry.yaml", b"three", g1)
    doc = new_store(s3_bucket, tmp_path / "b").read("registry.yaml")
    assert doc is not None and (doc.data, doc.generation) == (b"two", g2)
    store.write("journal/rollout.json", b"{}", None)
    assert store.keys() == ["journal/rollout.json", "registry.yaml"]
    assert store.keys("journal/") == ["journal/rollout.json"]
    with pytest.raises(StaleGeneration):
        store.delete("registry.yaml", g1)
    store.delete("registry.yaml", g2)
    store.delete("registry.yaml")  # already gone: fine
    assert store.read("registry.yaml") is None


def test_a_write_whose_answer_was_lost_is_recognised_as_ours(
    s3_env: dict, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # botocore retries a PUT whose answer was lost; the retry meets 412 from our own write.
    store = new_store(s3_bucket, tmp_path)
    g1 = store.write("registry.yaml", b"one", None)
    real_call = store.objects.call
    calls = {"put": 0}

    def answer_lost_once(rel: str, method: str, **kwargs: object) -> object:
        if method == "put_object" and calls["put"] == 0:
            calls["put"] += 1
            real_call(rel, method, **kwargs)  # lands on the server...
            return real_call(rel, method, **kwargs)  # ...and the "retry" of the same request gets 412
        return real_call(rel, method, **kwargs)

    monkeypatch.setattr(store.objects, "call", answer_lost_once)
    g2 = store.write("registry.yaml", b"two", g1)
    assert store.read("registry.yaml") == Document(b"two", g2)
    # Equal bytes from another writer are a lost race, not our write (two increments of one
    # stale read would otherwise both "succeed").
    other = new_store(s3_bucket, tmp_path / "other")
    other.write("registry.yaml", b"three", g2)
    with pytest.raises(StaleGeneration):
        store.write("registry.yaml", b"three", g2)


# --- versions ------------------------------------------------------------------------------


def test_claims_are_exclusive_and_never_handed_out_again(s3_env: dict, s3_bucket: str, tmp_path: Path) -> None:
    a, b = new_store(s3_bucket, tmp_path / "a"), new_store(s3_bucket, tmp_path / "b")
    assert a.claim_version("m", 1, "a") is True
    assert b.claim_version("m", 1, "b") is False
    assert b.claim_version("m", 2, "b") is True
    a.publish_version("m", 1, stage(a, "m", VERSION_FILES))
    a.delete_version("m", 1)
    assert b.claim_version("m", 1, "b") is False  # deleted, yet still taken


def test_published_version_is_seen_whole_by_another_machine(s3_env: dict, s3_bucket: str, tmp_path: Path) -> None:
    writer, reader = new_store(s3_bucket, tmp_path / "writer"), new_store(s3_bucket, tmp_path / "reader")
    assert writer.claim_version("deeplab", 1, "w")
    staged = stage(writer, "deeplab", VERSION_FILES)
    writer.publish_version("deeplab", 1, staged)
    assert not staged.exists()  # consumed: it became the writer's local copy
    assert writer.version_path("deeplab", 1) == tmp_path / "writer" / "deeplab" / "1"
    assert reader.version_numbers("deeplab") == [1]
    copy = reader.version_path("deeplab", 1)
    assert {p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == VERSION_FILES
    assert list(reader.iter_models()) == ["deeplab"]
    # Published versions never change.
    with pytest.raises(StaleGeneration):
        writer.publish_version("deeplab", 1, stage(writer, "deeplab", {"saved_model.pb": b"other"}))


def test_an_upload_without_its_manifest_does_not_exist(
    s3_env: dict, seaweed: Seaweed, s3_bucket: str, tmp_path: Path,
) -> None:
    store = new_store(s3_bucket, tmp_path)
    assert store.claim_version("m", 1, "w")
    # What a writer killed after uploading files (before the manifest) leaves behind.
    for rel, data in VERSION_FILES.items():
        seaweed.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/m/1/{rel}", Body=data)
    assert store.version_numbers("m") == []
    with pytest.raises(VersionNotFound):
        store.version_path("m", 1)
    assert not (tmp_path / "m" / "1").exists()
    leftovers = store.leftovers("m")
    assert [(x.number, x.objects) for x in leftovers] == [(1, len(VERSION_FILES))]
    assert leftovers[0].age_s < 120
    assert store.remove_leftover("m", 1) is True
    assert store.leftovers("m") == []
    assert not [k for k in object_keys(seaweed, s3_bucket) if k.startswith(f"{PREFIX}/m/1/")]
    # The number is used up: the killed writer, had it lived, could not publish it any more.
    with pytest.raises(StaleGeneration):
        store.publish_version("m", 1, stage(store, "m", VERSION_FILES))
    assert store.version_numbers("m") == []


def test_a_finished_upload_is_not_a_leftover(s3_env: dict, s3_bucket: str, tmp_path: Path) -> None:
    store = new_store(s3_bucket, tmp_path)
    store.claim_version("m", 1, "w")
    store.publish_version("m", 1, stage(store, "m", VERSION_FILES))
    assert store.leftovers("m") == []
    assert store.remove_leftover("m", 1) is False
    assert store.version_numbers("m") == [1]


def test_a_corrupted_object_is_never_renamed_into_place(
    s3_env: dict, seaweed: Seaweed, s3_bucket: str, tmp_path: Path,
) -> None:
    store = new_store(s3_bucket, tmp_path / "w")
    store.claim_version("m", 1, "w")
    store.publish_version("m", 1, stage(store, "m", VERSION_FILES))
    seaweed.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/m/1/variables/variables.index", Body=b"INDEX")
    reader = new_store(s3_bucket, tmp_path / "r")
    with pytest.raises(CorruptVersion, match="variables/variables.index"):
        reader.version_path("m", 1)
    assert list((tmp_path / "r" / "m").iterdir()) == []  # no temp folder, no copy


def test_a_deleted_version_disappears_before_its_files(
    s3_env: dict, seaweed: Seaweed, s3_bucket: str, tmp_path: Path,
) -> None:
    writer, reader = new_store(s3_bucket, tmp_path / "w"), new_store(s3_bucket, tmp_path / "r")
    for n in (1, 2):
        writer.claim_version("m", n, "w")
        writer.publish_version("m", n, stage(writer, "m", VERSION_FILES))
    reader.version_path("m", 1)
    writer.delete_version("m", 1)
    assert not (tmp_path / "w" / "m" / "1").exists()  # the deleting machine's copy goes too
    assert reader.version_numbers("m") == [2]
    with pytest.raises(VersionNotFound):
        reader.version_path("m", 1)
    assert not [k for k in object_keys(seaweed, s3_bucket) if k.startswith(f"{PREFIX}/m/1/")]
    with pytest.raises(VersionNotFound):
        writer.delete_version("m", 1)


# --- leases --------------------------------------------------------------------------------


def test_a_lease_is_held_by_one_writer_at_a_time(s3_env: dict, s3_bucket: str, tmp_path: Path) -> None:
    a, b = new_store(s3_bucket, tmp_path / "a", lease_ttl=2.0), new_store(s3_bucket, tmp_path / "b", lease_ttl=2.0)
    order: list[str] = []
    with a.lease("registry", timeout=5):
        # Held across several ttl periods: the holder's renewals keep it.
        with pytest.raises(LockTimeout, match="holds the lease"):
            with b.lease("registry", timeout=4.5):
                pass
        released = threading.Event()

        def waiter() -> None:
            with b.lease("registry", timeout=30):
                order.append("b")
            released.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        order.append("a")
    assert released.wait(30)
    thread.join()
    assert order == ["a", "b"]


LEASE_THEN_DIE = """
import os, signal, sys
from pathlib import Path
from lifecycle.store.base import Document
from lifecycle.store.s3 import S3Store
store = S3Store(sys.argv[1], "team/repo", Path(sys.argv[2]), lease_ttl=2.0)
with store.lease("registry", timeout=10):
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_dead_writers_lease_expires(
    s3_env: dict, s3_bucket: str, tmp_path: Path, subprocess_env: dict[str, str],
) -> None:
    child = subprocess.run(
        [sys.executable, "-c", LEASE_THEN_DIE, s3_bucket, str(tmp_path / "dead")],
        env={**subprocess_env, **s3_env}, capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == -signal.SIGKILL and child.stdout == "held\n", child.stderr
    store = new_store(s3_bucket, tmp_path / "next", lease_ttl=2.0)
    started = time.monotonic()
    with store.lease("registry", timeout=30):
        waited = time.monotonic() - started
    assert waited < 15  # the dead holder stopped renewing: taken over after its ttl


# --- errors at the boundary ----------------------------------------------------------------


def test_a_missing_bucket_is_one_clear_error(s3_env: dict, tmp_path: Path) -> None:
    store = new_store("no-such-bucket-mlc", tmp_path)
    with pytest.raises(BucketNotFound, match="s3://no-such-bucket-mlc/team/repo"):
        store.read("registry.yaml")
    with pytest.raises(BucketNotFound):
        store.version_numbers("m")


def test_wrong_credentials_are_one_clear_error(
    s3_env: dict, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    store = new_store(s3_bucket, tmp_path)
    with pytest.raises(StorageAccessDenied, match="AWS_ACCESS_KEY_ID"):
        store.read("registry.yaml")
    with pytest.raises(StorageAccessDenied):
        store.write("registry.yaml", b"x", None)


def test_an_unreachable_endpoint_is_one_clear_error(
    s3_env: dict, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.seaweed import free_ports

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_ports(1)[0]}")
    store = new_store(s3_bucket, tmp_path)
    with pytest.raises(StorageUnreachable, match="cannot reach the object store at http://127.0.0.1"):
        store.read("registry.yaml")
