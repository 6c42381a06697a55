"""Approvals in an S3 repository (a real SeaweedFS): two approvers at once lose neither decision."""

from __future__ import annotations

import subprocess

import pytest

from lifecycle.store import approvals, registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import VersionRecord
from tests.support.seaweed import Seaweed

pytestmark = pytest.mark.e2e

PREFIX = "approvals/repo"
VERSIONS = range(1, 5)


def publish(paths: Paths, model: str, numbers: range) -> None:
    """Publish tiny versions through the store (manifest last) and record them."""
    with registry.transaction(paths) as reg:
        rec = reg.model(model, create=True)
        for n in numbers:
            assert paths.store.claim_version(model, n, "tests")
            staged = paths.store.staging_dir(model) / f".staging-test-{n}"
            (staged / "variables").mkdir(parents=True)
            (staged / "saved_model.pb").write_bytes(b"placeholder %d" % n)
            (staged / "variables" / "variables.index").write_bytes(b"index %d" % n)
            paths.store.publish_version(model, n, staged)
            rec.versions.append(VersionRecord(n, f"sha256:{n}", f"run/ckpt-{n}", n, True, user="carol"))


def test_two_approvers_at_once_lose_neither_approval(
        bare_home: Paths, seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, python: str,
        subprocess_env: dict[str, str]) -> None:
    url = f"s3://{s3_bucket}/{PREFIX}"
    for name, value in {**seaweed.env(), "MLC_REPOSITORY": url}.items():
        monkeypatch.setenv(name, value)
    paths = Paths.from_env()
    (paths.configs / "m.yaml").write_text(
        "name: m\nnetwork: {}\nsignature: {key: serving_default, inputs: {x: {dtype: float32, shape: [-1, 1]}}, "
        "outputs: {y: {dtype: float32, shape: [-1, 1]}}}\napprovals: {required: 2, self_approval: false}\n")
    publish(paths, "m", VERSIONS)
    code = (
        "import sys\n"
        "from lifecycle import api\n"
        f"for n in {list(VERSIONS)}:\n"
        "    api.decide('m', n, 'approve', 'reviewed by ' + sys.argv[1])\n"
    )
    procs = []
    for user in ("alice", "bob"):
        env = {**subprocess_env, **seaweed.env(), "MLC_HOME": str(paths.home), "MLC_REPOSITORY": url,
               "LOGNAME": user, "USER": user}
        procs.append(subprocess.Popen([python, "-c", code, user], env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    rec = registry.load(paths).model("m")
    assert sorted((a.version, a.user) for a in rec.approvals) == [(n, u) for n in VERSIONS for u in ("alice", "bob")]
    digests = {n: approvals.content_digest(paths, "m", n) for n in VERSIONS}
    assert all(a.digest == digests[a.version] for a in rec.approvals)
    assert [s.state for s in approvals.states(paths, rec)] == ["approved"] * len(VERSIONS)
