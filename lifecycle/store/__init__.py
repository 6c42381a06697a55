"""The mlc home: paths, definitions and the repository behind one :class:`~lifecycle.store.base.Store`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lifecycle.store.base import Store
    from lifecycle.store.config import Paths


def open_store(paths: Paths) -> Store:
    """The repository of the home ``paths``: the local folder ``model_repo/``.

    The one place that chooses the implementation (issue 12 adds ``s3://`` prefixes, chosen by
    ``configs/mlc.yaml`` or ``$MLC_REPOSITORY``). Use ``paths.store``, built once per Paths.
    """
    from lifecycle.store.local import LocalStore

    return LocalStore(paths.model_repo)
