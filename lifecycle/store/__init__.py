"""The mlc home: paths, definitions and the repository behind one :class:`~lifecycle.store.base.Store`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lifecycle.store.base import Store
    from lifecycle.store.config import Paths


def open_store(paths: Paths) -> Store:
    """The repository of the home ``paths``: ``model_repo/``, or the s3:// prefix it names.

    The one place that chooses the implementation: ``$MLC_REPOSITORY`` or ``repository:`` in
    ``configs/mlc.yaml`` (:func:`lifecycle.store.config.repository_url`) selects an object
    store, whose verified local copies of versions then live in ``model_repo/``. Use
    ``paths.store``, built once per Paths.
    """
    from lifecycle.store.config import repository_url

    url = repository_url(paths)
    if url is None:
        from lifecycle.store.local import LocalStore

        return LocalStore(paths.model_repo)
    from lifecycle.store.s3 import S3Store
    from lifecycle.store.s3_client import parse_s3_url

    bucket, prefix = parse_s3_url(url)
    return S3Store(bucket, prefix, paths.model_repo)
