"""The repository as a local folder (``model_repo/``): today's guarantees behind :class:`Store`.

- A document is the file ``<repo>/<key>``, replaced atomically (temp file, fsync, rename, folder
  fsync: :func:`lifecycle.store.files.atomic_write_bytes`). Its generation is the SHA-256 of
  its bytes, so it is exact without any side file; a conditional write compares and swaps under
  a short lock (``<repo>/.mlc.cas.lock``), which makes it atomic across processes.
- A version is the folder ``<repo>/<model>/<N>`` (TF Serving's layout). It is staged beside it
  (``<repo>/<model>/.staging-*``, ignored by TF Serving), claimed by creating
  ``<repo>/.claims/<model>/<N>`` exclusively, fsynced and renamed into place in one step.
- A lease is a file lock (``<repo>/.mlc.lock`` for the registry lease, as before the seam),
  released by the kernel when its holder dies.

This module must not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from lifecycle.errors import StaleGeneration, VersionNotFound
from lifecycle.failpoints import failpoint
from lifecycle.store import manifest as manifests
from lifecycle.store.base import REGISTRY_LEASE, Document, Store
from lifecycle.store.files import (
    DEFAULT_LOCK_TIMEOUT_S,
    atomic_write_bytes,
    fsync_dir,
    fsync_tree,
    locked,
)
from lifecycle.store.names import MODEL_NAME_RE, check_model_name
from lifecycle.store.provenance import now_iso, owner_id

# How long a conditional write may wait for the others' compare-and-swap (each holds it briefly).
CAS_LOCK_TIMEOUT_S = 30.0
_LEASE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def generation_of(data: bytes) -> str:
    """A local document's generation: the SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


class LocalStore(Store):
    """A repository in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.root})"

    # --- documents -------------------------------------------------------------------------

    def _file(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(not p or p in {".", ".."} or p.startswith(".") for p in parts):
            raise ValueError(f"invalid document key {key!r}")  # keys are mlc's own, never user input
        return self.root.joinpath(*parts)

    def read(self, key: str) -> Document | None:
        """The document at ``key`` with its generation, or None if it does not exist."""
        try:
            data = self._file(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Document(data, generation_of(data))

    def write(self, key: str, data: bytes, generation: str | None) -> str:
        """Create (``generation=None``) or replace the document at that generation; return the new one."""
        file = self._file(key)
        with self._cas_lock():
            current = self.read(key)
            if generation is None and current is not None:
                raise StaleGeneration(f"{self.url}/{key} was created meanwhile by another mlc; re-read it and retry")
            if generation is not None and (current is None or current.generation != generation):
                raise StaleGeneration(f"{self.url}/{key} changed meanwhile (another mlc wrote it); re-read it and retry")
            atomic_write_bytes(file, data)
        return generation_of(data)

    def delete(self, key: str, generation: str | None = None) -> None:
        """Delete ``key`` (only at ``generation`` when given); a missing key is not an error."""
        file = self._file(key)
        with self._cas_lock():
            if generation is not None:
                current = self.read(key)
                if current is not None and current.generation != generation:
                    raise StaleGeneration(f"{self.url}/{key} changed meanwhile (another mlc wrote it); not deleted")
            try:
                file.unlink()
            except FileNotFoundError:
                return
            fsync_dir(file.parent)

    def keys(self, prefix: str = "") -> list[str]:
        """Every document key under ``prefix`` (version folders, staging and dot files excluded)."""
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            rel = Path(folder).relative_to(self.root)
            # Dot entries (locks, temp files, claims, staging) and integer folders (versions) hold no documents.
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.isdigit())
            for name in files:
                if not name.startswith("."):
                    key = "/".join((*rel.parts, name))
                    if key.startswith(prefix):
                        found.append(key)
        return sorted(found)

    def _cas_lock(self) -> AbstractContextManager[None]:
        return locked(self.root / ".mlc.cas.lock", CAS_LOCK_TIMEOUT_S)

    # --- versions --------------------------------------------------------------------------

    def _model_dir(self, model: str) -> Path:
        return self.root / check_model_name(model)

    def version_numbers(self, model: str) -> list[int]:
        """Integer folders under ``<repo>/<model>/`` (what TF Serving would see), ascending."""
        base = self._model_dir(model)
        try:
            return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and p.is_dir())
        except FileNotFoundError:
            return []

    def staging_dir(self, model: str) -> Path:
        """``<repo>/<model>/``: staging beside the versions makes publishing one rename."""
        base = self._model_dir(model)
        base.mkdir(parents=True, exist_ok=True)
        return base

    def claim_version(self, model: str, number: int, owner: str) -> bool:
        """Create ``<repo>/.claims/<model>/<N>`` exclusively; False if claimed or published before."""
        if (self._model_dir(model) / str(int(number))).exists():
            return False  # published without a claim (by mlc before the seam, or not by mlc)
        claims = self.root / ".claims" / check_model_name(model)
        claims.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(claims / str(int(number)), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, owner.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(claims)
        return True

    def publish_version(self, model: str, number: int, staged: Path) -> None:
        """fsync ``staged`` (a folder under :meth:`staging_dir`), then rename it to ``<model>/<N>``."""
        base = self._model_dir(model)
        staged = Path(staged)
        if staged.parent.resolve() != base.resolve():
            raise ValueError(f"{staged} is not staged in {base}")  # a programming error
        target = base / str(int(number))
        fsync_tree(staged)
        failpoint("store:publish")
        if target.exists():
            raise StaleGeneration(f"version {number} of {model} already exists in {self.url}; a published version never changes")
        # The manifest (every file's size and sha256), for `mlc verify`, in <repo>/.manifests/<model>/
        # beside the claims. The number is claimed: no other writer has this name.
        self._manifest_file(model, number).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self._manifest_file(model, number),
                           manifests.build(staged, model, number, owner_id(), now_iso()).to_bytes())
        try:
            os.rename(staged, target)  # fails on a non-empty target: never replaces a version
        except OSError as e:
            raise StaleGeneration(f"version {number} of {model} already exists in {self.url}: {e.strerror}") from e
        fsync_dir(base)

    def version_path(self, model: str, number: int) -> Path:
        """``<repo>/<model>/<N>``; VersionNotFound if that folder does not exist."""
        path = self._model_dir(model) / str(int(number))
        if not path.is_dir():
            raise VersionNotFound(f"version {number} of {model} is not published in {self.url} (no folder {path})")
        return path

    def delete_version(self, model: str, number: int) -> None:
        """Rename the version out of TF Serving's sight in one step, then remove its files."""
        path = self.version_path(model, number)
        doomed = path.parent / f".deleting-{int(number)}-{uuid.uuid4().hex[:8]}"
        os.rename(path, doomed)
        fsync_dir(path.parent)
        shutil.rmtree(doomed)
        self._manifest_file(model, number).unlink(missing_ok=True)

    def _manifest_file(self, model: str, number: int) -> Path:
        return self.root / ".manifests" / check_model_name(model) / f"{int(number)}.json"

    def version_manifest(self, model: str, number: int) -> manifests.Manifest:
        """The manifest written when the version was published (built from its files for older versions)."""
        file = self._manifest_file(model, number)
        if file.exists():
            return manifests.Manifest.from_bytes(file.read_bytes(), str(file))
        return super().version_manifest(model, number)

    def has_manifest(self, model: str, number: int) -> bool:
        """Whether the version's manifest was written when it was published."""
        return self._manifest_file(model, number).exists()

    # --- leases ----------------------------------------------------------------------------

    def lease(self, name: str, timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> AbstractContextManager[None]:
        """The file lock ``<repo>/.mlc.lock`` (registry) or ``<repo>/.mlc-<name>.lock``."""
        if not _LEASE_NAME_RE.match(name):
            raise ValueError(f"invalid lease name {name!r}")
        file = ".mlc.lock" if name == REGISTRY_LEASE else f".mlc-{name}.lock"
        return locked(self.root / file, timeout)

    def iter_models(self) -> Iterator[str]:
        """Model folders that hold at least one integer version folder."""
        try:
            entries = sorted(self.root.iterdir())
        except FileNotFoundError:
            return iter(())
        return iter([
            p.name for p in entries
            if p.is_dir() and MODEL_NAME_RE.match(p.name) and self.version_numbers(p.name)
        ])
