"""The one place that chooses the repository's implementation: a local folder or an s3:// prefix."""

from __future__ import annotations

from pathlib import Path

from lifecycle.store.base import Store


def open_store(url: str | None, local_dir: Path) -> Store:
    """The repository at ``url`` (an ``s3://bucket/prefix``), or the folder ``local_dir`` when None.

    An object store keeps its verified local copies of versions in ``local_dir`` (the home's
    ``model_repo/``). Use ``paths.store``, built once per Paths.
    """
    # Each implementation is imported only when chosen: a local home never loads the S3 code.
    if url is None:
        from lifecycle.store.local import LocalStore

        return LocalStore(local_dir)
    from lifecycle.store.s3 import S3Store
    from lifecycle.store.s3_client import parse_s3_url

    bucket, prefix = parse_s3_url(url)
    return S3Store(bucket, prefix, local_dir)
