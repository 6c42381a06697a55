"""Fixtures of the fault matrix: half_plus_two versions built once, a SeaweedFS of the test's own,
an S3 repository on it, and the environment mlc child processes run in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults import Store
from tests.support.rollout_support import build_versions


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """half_plus_two versions 1..4 (y = 0.5 x + v) with warmup records, built once."""
    return build_versions(tmp_path_factory.mktemp("fault-hpt"), [1, 2, 3, 4])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SeaweedFS of this test alone: the test may kill it and bring it back."""
    s = Store.start(tmp_path / "weed")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def remote(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process and its children use ``s3://<fresh bucket>/repo`` on ``store``; leases expire after 3 s."""
    bucket = store.server.new_bucket("fault")
    env = {**store.server.env(), "MLC_REPOSITORY": f"s3://{bucket}/repo", "MLC_S3_LEASE_TTL": "3",
           "AWS_MAX_ATTEMPTS": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
