"""The Store contract (tests/unit/test_store_contract.py), run against S3Store on a real SeaweedFS.

The same test functions as for the local folder, collected here again with the ``store`` and
``store_factory`` fixtures overridden to open one fresh bucket; forked children each open their
own boto3 client.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.store.base import Store
from lifecycle.store.s3 import S3Store
from tests.support.stores import StoreFactory
from tests.unit.test_store_contract import *  # noqa: F403 - the contract's test functions
from tests.unit.test_store_contract import __doc__ as CONTRACT  # noqa: F401


@pytest.fixture
def store_factory(s3_env: dict[str, str], s3_bucket: str, tmp_path: Path) -> StoreFactory:
    """Clients of one empty repository ``s3://<fresh bucket>/repo``, each with its own local folder."""
    counter = iter(range(1_000_000))
    return lambda: S3Store(s3_bucket, "repo", tmp_path / f"machine-{next(counter)}")


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    """A client of an empty S3 repository."""
    return store_factory()
