"""The Store implementations the contract tests run against: add a kind here, in one place.

``store_factory`` is parametrized over :data:`KINDS`; it gives a function that opens a fresh
client of one empty repository, so that forked test processes each open their own (an object
store's connections must not cross a fork). tests/conftest.py loads this module as a plugin, so
every test can ask for ``store`` or ``store_factory``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lifecycle.store.base import Store
from lifecycle.store.local import LocalStore

StoreFactory = Callable[[], Store]

KINDS = ["local"]


def open_kind(kind: str, tmp_path: Path) -> StoreFactory:
    """A factory of clients of one new, empty repository of ``kind`` under ``tmp_path``."""
    if kind == "local":
        root = tmp_path / "model_repo"
        return lambda: LocalStore(root)
    raise ValueError(f"unknown store kind {kind!r}")


@pytest.fixture(params=KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Opens clients of one empty repository, once per kind in :data:`KINDS`."""
    return open_kind(request.param, tmp_path)


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    """A client of an empty repository (one per kind in :data:`KINDS`)."""
    return store_factory()
