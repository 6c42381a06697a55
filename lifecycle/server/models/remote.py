"""``s3://`` base paths for mlc-model-server: complete versions, copied to a local cache.

TF Serving reads no ``s3://`` since 2.7; mlc-model-server does. A base path
``s3://bucket/some/prefix/<model>`` names the model ``<model>`` of the mlc repository
``s3://bucket/some/prefix`` (:class:`lifecycle.store.s3.S3Store`, configured by the standard
AWS environment). Each time the server looks for versions (at a config load and on every
file-system poll) it lists the complete versions (those with a manifest: a partial upload is
never seen), copies the ones the version policy wants to a local cache, verified file by file
and renamed into place, and then serves from the cache folder as from any local base path.

The cache is ``$MLC_SERVER_CACHE`` (default: ``mlc-model-server-cache`` in the temp folder),
one sub-folder per repository. An unreachable store is logged and the cached versions serve on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from lifecycle.errors import LifecycleError

log = logging.getLogger("mlc-model-server")

CACHE_ENV = "MLC_SERVER_CACHE"
_stores: dict[str, Any] = {}
_lock = threading.Lock()


def cache_root() -> Path:
    """Where copies of remote versions live on this machine."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "mlc-model-server-cache")


def _cache_of(repository: str) -> Path:
    return cache_root() / hashlib.sha256(repository.encode()).hexdigest()[:16]


def _store(repository: str) -> Any:
    """One S3Store (and boto3 client) per repository URL, kept for the server's life."""
    from lifecycle.store.s3 import S3Store
    from lifecycle.store.s3_client import parse_s3_url

    with _lock:
        if repository not in _stores:
            bucket, prefix = parse_s3_url(repository)
            _stores[repository] = S3Store(bucket, prefix, _cache_of(repository))
        return _stores[repository]


def _wanted(numbers: list[int], policy: Any) -> list[int]:
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return numbers
    if choice == "specific":
        return [n for n in numbers if n in set(policy.specific.versions)]
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return sorted(numbers)[-count:]


def local_base(config: Any) -> Path:
    """The local folder to read versions from for this model config (copying remote ones first)."""
    base = str(config.base_path)
    if not base.startswith("s3://"):
        return Path(base)
    repository, _, model = base.rstrip("/").rpartition("/")
    folder = _cache_of(repository) / model
    try:
        store = _store(repository)
        for number in _wanted(store.version_numbers(model), config.model_version_policy):
            store.copy_version(model, number, folder)
    except LifecycleError as e:
        log.warning("Remote base path %s of servable %s: %s; serving the cached versions", base, config.name, e.message)
    return folder
