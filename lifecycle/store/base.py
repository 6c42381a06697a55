"""The storage seam: the repository part of an mlc home behind one interface.

The repository holds what every writer shares: the registry (with each model's history), the
rollout journal, the desired serving state and the published versions. It is a local folder
(``model_repo/``, :class:`lifecycle.store.local.LocalStore`) or an object-store prefix
(``s3://bucket/prefix``). The interface is shaped so that an object store can implement it
without any lock:

- **Documents** are small objects read and replaced whole. :meth:`Store.read` returns the
  bytes with a *generation* (an opaque token: an ETag on S3, a content digest locally), and
  :meth:`Store.write` is conditional: ``generation=None`` creates only if absent (S3
  ``If-None-Match: *``), a generation replaces only if the document is still at it (S3
  ``If-Match``). A lost race raises :class:`~lifecycle.errors.StaleGeneration`; callers re-read
  and retry through :func:`lifecycle.store.cas.update`, never overwrite.
- **Versions** are staged in a local folder (under :meth:`Store.staging_dir`), claimed by a
  conditional create (:meth:`Store.claim_version`) and published whole
  (:meth:`Store.publish_version`): a reader never sees a partial version, and a claimed number
  is never handed out again, even if its writer dies before publishing.
- **Leases** (:meth:`Store.lease`) give one writer a long operation (a rollout) to itself. A
  local folder uses a file lock; an object store uses a conditionally created lease object
  that expires, so a writer killed on another machine does not block the rest for ever.

Keys are ``/``-separated relative names such as ``registry.yaml`` or ``journal/rollout.json``.

Every implementation passes the same contract tests (``tests/unit/test_store_contract.py``,
over the stores listed in ``tests/support/stores.py``) and calls the failpoint
``store:publish`` (:mod:`lifecycle.failpoints`) in :meth:`Store.publish_version` once the
version's files are in place but before it becomes visible, so that a crash test can kill a
publisher there.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from lifecycle.failpoints import failpoint
from lifecycle.store import manifest
from lifecycle.store.files import fsync_tree, incoming_folder, rename_into_place
from lifecycle.store.manifest import Manifest

#: The lease every registry mutation holds (``model_repo/.mlc.lock`` in a local folder).
REGISTRY_LEASE = "registry"


@dataclass(frozen=True)
class Leftover:
    """An upload that never completed: version ``number``'s files, ``age_s`` seconds old."""

    model: str
    number: int
    objects: int
    age_s: float


@dataclass(frozen=True)
class Document:
    """A document's bytes and the generation they were read at."""

    data: bytes
    generation: str


class Store(ABC):
    """One repository: documents by compare-and-swap, versions published whole, leases."""

    #: Where the repository lives, for messages: ``/abs/model_repo`` or ``s3://bucket/prefix``.
    url: str

    # --- documents -----------------------------------------------------------------------

    @abstractmethod
    def read(self, key: str) -> Document | None:
        """The document at ``key`` with its generation, or None if it does not exist."""

    @abstractmethod
    def write(self, key: str, data: bytes, generation: str | None) -> str:
        """Create (``generation=None``) or replace the document at that generation; return the new one.

        Raises StaleGeneration when the document exists (create) or has moved on (replace).
        """

    @abstractmethod
    def delete(self, key: str, generation: str | None = None) -> None:
        """Delete ``key`` (only at ``generation`` when given); a missing key is not an error."""

    @abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """Every document key under ``prefix``, sorted."""

    # --- versions --------------------------------------------------------------------------

    @abstractmethod
    def version_numbers(self, model: str) -> list[int]:
        """The complete versions of ``model``, ascending (a partial upload is not listed)."""

    @abstractmethod
    def staging_dir(self, model: str) -> Path:
        """The local folder to stage new versions of ``model`` in (created if missing).

        A local store stages beside the published versions, so publishing is one rename.
        """

    @abstractmethod
    def claim_version(self, model: str, number: int, owner: str) -> bool:
        """Claim ``number`` for a version about to be published; False if it is taken.

        Taken means claimed before (by anyone, even a writer that died) or present as a version.
        ``owner`` says who claims (host, pid), for people reading the repository.
        """

    @abstractmethod
    def publish_version(self, model: str, number: int, staged: Path) -> None:
        """Make the local folder ``staged`` (under :meth:`staging_dir`) version ``number``, whole or not at all.

        ``number`` must have been claimed by this writer. The staged folder is consumed.
        Raises StaleGeneration if the version exists already (it is never replaced).
        """

    @abstractmethod
    def version_path(self, model: str, number: int) -> Path:
        """A local folder holding the complete version (the folder itself, or a verified copy).

        Raises VersionNotFound if the version is not published.
        """

    def version_manifest(self, model: str, number: int) -> Manifest:
        """Every file of a published version with its size and sha256 (an object store reads its manifest)."""
        return manifest.build(self.version_path(model, number), model, number, "", "")

    def read_version_file(self, model: str, number: int, rel: Path | str) -> bytes:
        """One file of a published version (e.g. its own record), without copying the rest.

        Raises VersionNotFound if the version is not published, OSError if it has no such file.
        """
        return (self.version_path(model, number) / rel).read_bytes()

    def copy_version(self, model: str, number: int, target_base: Path) -> Path:
        """Copy the complete version to ``target_base/<N>`` (``mlc sync``): into a temp folder
        there, then renamed into place, so a server polling ``target_base`` never sees a partial
        copy. An existing ``target_base/<N>`` is kept. An object store overrides this to
        download and verify against the manifest.
        """
        source = self.version_path(model, number)
        target = Path(target_base) / str(int(number))
        if target.is_dir():
            return target
        with incoming_folder(target) as temp:
            shutil.copytree(source, temp, dirs_exist_ok=True)
            fsync_tree(temp)
            failpoint("store:copy")
            rename_into_place(temp, target)
        return target

    def verify_version(self, model: str, number: int) -> None:
        """CorruptVersion unless the version's files match its manifest (a local folder keeps none)."""
        return None

    def fetch_versions(self, model: str, numbers: Iterable[int]) -> None:  # noqa: B027 - a no-op by default: a local folder holds its versions in place
        """Make sure this machine holds these versions where a serving config names them
        (``model_repo/<model>/<N>``), before the config is written or pushed. A local folder
        holds them there already; an object store copies them (verified) first."""

    def leftovers(self, model: str) -> list[Leftover]:
        """Uploads of ``model`` that never completed (an object store's; a local folder has none:
        its staging folders are cleaned by the next register)."""
        return []

    def remove_leftover(self, model: str, number: int) -> bool:
        """Delete an unfinished upload so it can never complete; False if it completed meanwhile."""
        return False

    @abstractmethod
    def delete_version(self, model: str, number: int) -> None:
        """Remove a published version (retention): it stops being visible first (renamed away, or
        its manifest tombstoned), then its files go, so no reader ever sees a partial version."""

    # --- leases ----------------------------------------------------------------------------

    @abstractmethod
    def lease(self, name: str, timeout: float) -> AbstractContextManager[None]:
        """Hold the named lease for a long operation; LockTimeout after ``timeout`` s of waiting."""

    def iter_models(self) -> Iterator[str]:
        """Model names that have at least one version folder or prefix."""
        return iter(())
