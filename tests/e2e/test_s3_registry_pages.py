"""The registry's pages in an S3 repository (a real SeaweedFS): an old registry in the bucket
(versions, or the history, inline) is read and moved to pages on the next write; a page no head
names is removed by the next write; a head-only read selects versions and the last event; two
processes writing at once lose no version and no event."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.seaweed import Seaweed
from tests.unit.test_registry_pages import add_versions

pytestmark = pytest.mark.e2e

PREFIX = "pages/repo"


@pytest.fixture
def s3_home(bare_home: Paths, seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """``bare_home`` whose repository is ``s3://<fresh bucket>/pages/repo``."""
    for name, value in {**seaweed.env(), "MLC_REPOSITORY": f"s3://{s3_bucket}/{PREFIX}"}.items():
        monkeypatch.setenv(name, value)
    return Paths.from_env()


def objects(seaweed: Seaweed, bucket: str, under: str) -> set[str]:
    listing = seaweed.client().list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/{under}")
    return {o["Key"].removeprefix(f"{PREFIX}/") for o in listing.get("Contents", [])}


def head(seaweed: Seaweed, bucket: str) -> dict:  # type: ignore[type-arg]
    return json.loads(seaweed.client().get_object(Bucket=bucket, Key=f"{PREFIX}/registry.yaml")["Body"].read())


def test_pages_in_a_bucket(s3_home: Paths, seaweed: Seaweed, s3_bucket: str) -> None:
    old = {"schema": 1, "models": {"m": {"stable": 1, "versions": [
        {"version": n, "checkpoint_digest": f"sha256:{n}", "checkpoint": f"run/ckpt-{n}", "step": n,
         "validated": True, "report": {}} for n in (1, 2)]}}}
    seaweed.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/registry.yaml", Body=yaml.safe_dump(old).encode())
    assert [v.version for v in registry.load(s3_home).model("m").versions] == [1, 2]

    add_versions(s3_home, range(3, 4))
    refs = {p["key"] for p in head(seaweed, s3_bucket)["models"]["m"]["pages"]}
    assert head(seaweed, s3_bucket)["schema"] == registry.SCHEMA and objects(seaweed, s3_bucket, "registry/") == refs
    assert [v.version for v in registry.load(s3_home).model("m").versions] == [1, 2, 3]

    # A killed writer's page (no head names it) goes with the next write; readers never see it.
    seaweed.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/registry/m/0-leftover.json", Body=b"{}")
    assert [v.version for v in registry.load(s3_home).model("m").versions] == [1, 2, 3]
    add_versions(s3_home, range(4, 5))
    refs = {p["key"] for p in head(seaweed, s3_bucket)["models"]["m"]["pages"]}
    assert objects(seaweed, s3_bucket, "registry/") == refs

    rec = registry.load(s3_home, versions=False).model("m")
    assert rec.version_count() == 4
    assert [v.version for v in registry.select(s3_home, rec, {1}, 1)] == [1, 4]


def test_two_processes_writing_into_one_bucket_lose_no_version(
        s3_home: Paths, python: str, subprocess_env: dict[str, str], seaweed: Seaweed, s3_bucket: str) -> None:
    code = (
        "import sys\n"
        "from lifecycle.store import registry\n"
        "from lifecycle.store.config import Paths\n"
        "paths = Paths.from_env()\n"
        "for _ in range(8):\n"
        "    with registry.transaction(paths) as reg:\n"
        "        rec = reg.model('m', create=True)\n"
        "        n = (rec.latest_version() or 0) + 1\n"
        "        rec.versions.append(registry.VersionRecord(version=n, checkpoint_digest=f'{sys.argv[1]}{n}',\n"
        "                                                   checkpoint='c', step=n, validated=True))\n"
    )
    env = {**subprocess_env, **seaweed.env(), "MLC_HOME": str(s3_home.home),
           "MLC_REPOSITORY": f"s3://{s3_bucket}/{PREFIX}"}
    procs = [subprocess.Popen([python, "-c", code, tag], env=env, stderr=subprocess.PIPE, text=True) for tag in "ab"]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    versions = registry.load(s3_home).model("m").versions
    assert [v.version for v in versions] == list(range(1, 17))
    assert sorted(v.checkpoint_digest[0] for v in versions) == ["a"] * 8 + ["b"] * 8
    refs = {p["key"] for p in head(seaweed, s3_bucket)["models"]["m"]["pages"]}
    assert objects(seaweed, s3_bucket, "registry/") == refs


def test_a_history_inline_in_the_bucket_moves_to_pages_and_grows_a_page_at_a_time(
        s3_home: Paths, seaweed: Seaweed, s3_bucket: str) -> None:
    from lifecycle.store.registry_log import LOG_PAGE_SIZE as P

    old = {"schema": 2, "models": {"m": {"stable": 1, "canary": None, "checkpoints": [], "pages": [], "history": [
        {"action": "promote", "from_version": None, "to_version": n, "result": "ok", "time": "2026-01-01T00:00:00+00:00",
         "user": "u"} for n in range(1, P + 1)], "attempts": []}}}
    seaweed.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/registry.yaml", Body=json.dumps(old).encode())
    assert [e.to_version for e in registry.load(s3_home).model("m").history] == list(range(1, P + 1))

    with registry.transaction(s3_home) as reg:
        reg.model("m").history.append(registry.HistoryEvent("promote", P, P + 1, "ok"))
    log = head(seaweed, s3_bucket)["models"]["m"]["history"]
    assert head(seaweed, s3_bucket)["schema"] == registry.SCHEMA and log["count"] == P + 1 and len(log["pages"]) == 2
    assert len(objects(seaweed, s3_bucket, "registry/m/history/")) == 2
    first = log["pages"][0]
    with registry.transaction(s3_home) as reg:
        reg.model("m").history.append(registry.HistoryEvent("rollback", P + 1, P, "ok"))
    log = head(seaweed, s3_bucket)["models"]["m"]["history"]
    assert log["pages"][0] == first and len(objects(seaweed, s3_bucket, "registry/m/history/")) == 2  # the full page stays
    rec = registry.load(s3_home, versions=False).model("m")
    assert rec.history.last is not None and rec.history.last.action == "rollback" and len(rec.history) == P + 2
    assert [e.to_version for e in rec.history][-3:] == [P, P + 1, P]


def test_two_processes_appending_to_one_bucket_lose_no_event(
        s3_home: Paths, python: str, subprocess_env: dict[str, str], seaweed: Seaweed, s3_bucket: str) -> None:
    code = (
        "import sys\n"
        "from lifecycle.store import registry\n"
        "from lifecycle.store.config import Paths\n"
        "paths = Paths.from_env()\n"
        "for n in range(8):\n"
        "    with registry.transaction(paths) as reg:\n"
        "        reg.model('m', create=True).history.append(registry.HistoryEvent('promote', None, n, 'ok',\n"
        "                                                                        reason=sys.argv[1]))\n"
    )
    env = {**subprocess_env, **seaweed.env(), "MLC_HOME": str(s3_home.home),
           "MLC_REPOSITORY": f"s3://{s3_bucket}/{PREFIX}"}
    procs = [subprocess.Popen([python, "-c", code, tag], env=env, stderr=subprocess.PIPE, text=True) for tag in "ab"]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    events = registry.load(s3_home).model("m").history
    assert sorted((e.reason, e.to_version) for e in events) == [(t, n) for t in "ab" for n in range(8)]
    assert len(objects(seaweed, s3_bucket, "registry/m/history/")) == 1
