"""The repository as an object-store prefix (``s3://bucket/prefix``): :class:`S3Store`.

No lock server, only S3's conditional writes. Under ``<prefix>/``:

- ``<key>``: a document (``registry.yaml``, the rollout journal...). Its generation is the
  ETag; a create is ``PutObject If-None-Match: *``, a replace ``PutObject If-Match: <ETag>``,
  and a lost race (412) is :class:`~lifecycle.errors.StaleGeneration`.
- ``<model>/<N>/...``: the files of version N (TF Serving's layout under a base path).
- ``<model>/.manifests/<N>.json``: version N's manifest (:mod:`lifecycle.store.manifest`),
  written last and only if absent. **A version exists exactly when its manifest does.** Readers
  list manifests, never files, so a partial upload is invisible. When a version is deleted, or
  an abandoned upload is cleaned up, the manifest key is taken over by a small *tombstone*
  first (atomically: ``If-Match`` on the manifest, or ``If-None-Match: *`` for an upload
  that never finished), and only then are the files removed: a late publisher's manifest write
  fails, so no reader can ever see a version with files missing.
- ``<model>/.claims/<N>``: the claim on number N, created only if absent and never deleted, so
  a number is never handed out twice, even when its writer died before publishing.
- ``.leases/<name>``: a lease object created only if absent, renewed by its holder every
  ``ttl/4`` s; a lease not renewed for ``ttl`` s (by the server's clock: its ``Last-Modified``
  against its ``Date``) is taken over by ``If-Match``, so a writer killed on another machine
  blocks the others for at most ``ttl`` seconds.

Locally (``local_dir``: the home's ``model_repo/``) it stages new versions and keeps verified
copies of versions in TF Serving's layout, ``<local_dir>/<model>/<N>`` (:meth:`S3Store.version_path`):
downloaded to a temp folder, checked against the manifest, renamed into place. So a server on
this machine serves ``model_repo/<model>`` whether the repository is local or remote.

The conditional-write primitives are :class:`~lifecycle.store.s3_objects.S3Objects`, shared
with the leases of :mod:`lifecycle.store.s3_lease`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from lifecycle.errors import StaleGeneration, VersionNotFound
from lifecycle.failpoints import failpoint
from lifecycle.store import manifest as manifests
from lifecycle.store.base import Document, Leftover, Store
from lifecycle.store.files import fsync_tree, incoming_folder, rename_into_place
from lifecycle.store.names import MODEL_NAME_RE, check_model_name
from lifecycle.store.provenance import now_iso, owner_id
from lifecycle.store.s3_client import translate
from lifecycle.store.s3_lease import LeaseHolder
from lifecycle.store.s3_objects import S3Objects

# A manifest key holding this is a tombstone: the number is used up, the version does not exist.
TOMBSTONE = b'{"tombstone": true}\n'
DEFAULT_LEASE_TTL_S = 30.0
LEASE_TTL_ENV = "MLC_S3_LEASE_TTL"
TRANSFER_THREADS = 8


class S3Store(Store):
    """A repository under ``s3://bucket/prefix``, with a local folder for staging and copies."""

    def __init__(self, bucket: str, prefix: str, local_dir: Path, client: Any = None,
                 lease_ttl: float | None = None) -> None:
        self.objects = S3Objects(bucket, prefix, client)
        self.bucket, self.prefix, self.url = bucket, self.objects.prefix, self.objects.url
        self.local_dir = Path(local_dir)
        self.lease_ttl = float(lease_ttl or os.environ.get(LEASE_TTL_ENV) or DEFAULT_LEASE_TTL_S)

    def __repr__(self) -> str:
        return f"S3Store({self.url})"

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (thread-safe to share)."""
        return self.objects.client

    # --- raw objects -----------------------------------------------------------------------

    def _where(self, rel: str = "") -> str:
        return self.objects.where(rel)

    def check(self) -> None:
        """Fail now, with one clear line, if the bucket is missing, unreachable or refuses us."""
        list(self.objects.listing(".leases/", "/"))

    # --- documents -------------------------------------------------------------------------

    @staticmethod
    def _check_key(key: str) -> str:
        parts = key.split("/")
        if not key or any(not p or p.startswith(".") or p.isdigit() for p in parts):
            raise ValueError(f"invalid document key {key!r}")  # keys are mlc's own, never user input
        return key

    def read(self, key: str) -> Document | None:
        """The document at ``key`` with its ETag, or None if it does not exist."""
        got = self.objects.get(self._check_key(key))
        return None if got is None else Document(got[0], got[1])

    def write(self, key: str, data: bytes, generation: str | None) -> str:
        """Create (``generation=None``, If-None-Match) or replace at the ETag (If-Match)."""
        return self.objects.put(self._check_key(key), data, generation, create=generation is None)

    def delete(self, key: str, generation: str | None = None) -> None:
        """Delete ``key`` (only at ``generation``, If-Match, when given); a missing key is fine."""
        self.objects.delete(self._check_key(key), generation)

    def keys(self, prefix: str = "") -> list[str]:
        """Every document key under ``prefix`` (version files, manifests, claims, leases excluded)."""
        found = []
        for obj in self.objects.listing(prefix):
            parts = obj.get("Key", ".").split("/")
            if not any(p.startswith(".") or p.isdigit() for p in parts):
                found.append(obj["Key"])
        return sorted(found)

    # --- versions --------------------------------------------------------------------------

    def _manifest_rel(self, model: str, number: int) -> str:
        return f"{check_model_name(model)}/.manifests/{int(number)}.json"

    def version_numbers(self, model: str) -> list[int]:
        """Versions with a manifest (one listing; tombstones and partial uploads are not listed)."""
        rel = f"{check_model_name(model)}/.manifests/"
        numbers = []
        for obj in self.objects.listing(rel, "/"):
            name = obj.get("Key", "")[len(rel):]
            if name.endswith(".json") and name[:-5].isdigit() and obj["Size"] != len(TOMBSTONE):
                numbers.append(int(name[:-5]))
        return sorted(numbers)

    def read_manifest(self, model: str, number: int) -> tuple[manifests.Manifest, str]:
        """The manifest of a published version and its ETag; VersionNotFound otherwise."""
        rel = self._manifest_rel(model, number)
        got = self.objects.get(rel)
        if got is None or got[0] == TOMBSTONE:
            raise VersionNotFound(f"version {number} of {model} is not published in {self.url} (no manifest {rel})")
        return manifests.Manifest.from_bytes(got[0], self._where(rel)), got[1]

    def staging_dir(self, model: str) -> Path:
        """``<local_dir>/<model>``: staged beside this machine's verified copies (as a local store)."""
        folder = self._copies_dir(model)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _copies_dir(self, model: str) -> Path:
        return self.local_dir / check_model_name(model)

    def claim_version(self, model: str, number: int, owner: str) -> bool:
        """Create ``<model>/.claims/<N>`` only if absent; False if claimed or published before."""
        body = json.dumps({"owner": owner, "token": uuid.uuid4().hex, "time": now_iso()}).encode()
        try:
            self.objects.put(f"{check_model_name(model)}/.claims/{int(number)}", body, None, create=True)
        except StaleGeneration:
            return False
        # A version put there by other means (no claim) still takes the number.
        return self.objects.get(self._manifest_rel(model, number)) is None

    def publish_version(self, model: str, number: int, staged: Path) -> None:
        """Upload every file of ``staged`` under ``<model>/<N>/``, then create the manifest."""
        staged = Path(staged)
        if staged.parent.resolve() != self.staging_dir(model).resolve():
            raise ValueError(f"{staged} is not staged in {self.staging_dir(model)}")  # a programming error
        rel = self._manifest_rel(model, number)
        if self.objects.get(rel) is not None:
            raise StaleGeneration(f"version {number} of {model} already exists in {self.url}; a published version never changes")
        manifest = manifests.build(staged, model, int(number), owner_id(), now_iso())
        base = f"{check_model_name(model)}/{int(number)}/"
        self._transfer(
            [(file, base + file) for file in manifest.files],
            lambda file, key: self.client.upload_file(str(staged / file), self.bucket, self.objects.key(key)),
        )
        failpoint("store:publish")
        try:
            self.objects.put(rel, manifest.to_bytes(), None, create=True)
        except StaleGeneration as e:
            raise StaleGeneration(
                f"version {number} of {model} was taken in {self.url} while uploading (cleaned up as an "
                "abandoned upload, or published by another writer); nothing was published"
            ) from e
        # The staged folder becomes this machine's copy: no download to serve it here.
        copies = self._copies_dir(model)
        copies.mkdir(parents=True, exist_ok=True)
        rename_into_place(staged, copies / str(int(number)))

    def _transfer(self, items: list[tuple[str, str]], one: Any) -> None:
        """Run ``one(file, key)`` for every item on a thread pool; errors translated."""
        from botocore.exceptions import BotoCoreError, ClientError

        def run(item: tuple[str, str]) -> None:
            try:
                one(*item)
            except (BotoCoreError, ClientError) as e:
                raise translate(e, self._where(item[1])) from e

        with ThreadPoolExecutor(min(TRANSFER_THREADS, max(1, len(items)))) as pool:
            for _ in pool.map(run, items):
                pass

    def copy_version(self, model: str, number: int, target_base: Path) -> Path:
        """Download version N to ``target_base/<N>``: into a temp folder, verified, renamed into place.

        An existing ``target_base/<N>`` is kept (copies are only ever renamed in whole).
        """
        target = Path(target_base) / str(int(number))
        manifest, _ = self.read_manifest(model, number)
        if target.is_dir():
            return target
        base = f"{check_model_name(model)}/{int(number)}/"
        where = f"{self.url}/{base}"
        with incoming_folder(target) as temp:
            for file in manifest.files:
                (temp / file).parent.mkdir(parents=True, exist_ok=True)

            def fetch(file: str, key: str) -> None:
                # One pass: hashed and flushed while it streams in, so verifying re-reads nothing
                # and the fsync overlaps the other files' downloads.
                response = self.client.get_object(Bucket=self.bucket, Key=self.objects.key(key))
                digest = hashlib.sha256()
                with open(temp / file, "wb") as out:
                    for chunk in response["Body"].iter_chunks(manifests.CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                manifests.verify_file(temp / file, file, manifest.files[file], where, digest.hexdigest())

            self._transfer([(f, base + f) for f in manifest.files], fetch)
            fsync_tree(temp)  # the files are flushed already: this syncs the folders
            failpoint("store:copy")
            return rename_into_place(temp, target)

    def version_manifest(self, model: str, number: int) -> manifests.Manifest:
        """The manifest the publisher wrote last (VersionNotFound when there is none)."""
        return self.read_manifest(model, number)[0]

    def read_version_file(self, model: str, number: int, rel: Path | str) -> bytes:
        """This machine's copy of the file if it holds the version, else that one object, verified."""
        local = self._copies_dir(model) / str(int(number))
        if local.is_dir():
            return (local / rel).read_bytes()
        manifest, _ = self.read_manifest(model, number)
        rel = Path(rel).as_posix()
        entry = manifest.files.get(rel)
        if entry is None:
            raise FileNotFoundError(f"version {number} of {model} has no {rel}")
        key = f"{check_model_name(model)}/{int(number)}/{rel}"
        got = self.objects.get(key)
        if got is None:
            raise FileNotFoundError(f"{self._where(key)} is missing")
        return manifests.verify_data(got[0], rel, entry, self._where(key))

    def version_path(self, model: str, number: int) -> Path:
        """This machine's verified copy ``<local_dir>/<model>/<N>`` (downloaded once).

        VersionNotFound if the version is not published (any more). A copy of a version deleted
        remotely is left for ``mlc sync`` or ``mlc gc`` to remove once no server has it loaded.
        """
        return self.copy_version(model, number, self._copies_dir(model))

    def verify_version(self, model: str, number: int) -> None:
        """CorruptVersion unless this machine's copy matches the manifest file by file (size, sha256)."""
        manifest, _ = self.read_manifest(model, number)
        folder = self.version_path(model, number)
        for rel, entry in manifest.files.items():
            manifests.verify_file(folder / rel, rel, entry, str(folder))

    def fetch_versions(self, model: str, numbers: Iterable[int]) -> None:
        """Copy the versions a serving config is about to name to ``model_repo/<model>/`` (once)."""
        for number in numbers:
            self.version_path(model, number)

    def delete_version(self, model: str, number: int) -> None:
        """Tombstone the manifest (If-Match) first, so no reader sees the version, then delete its
        files and this machine's copy."""
        _, etag = self.read_manifest(model, number)
        self.objects.put(self._manifest_rel(model, number), TOMBSTONE, etag, create=False)
        self._delete_files(model, number)
        shutil.rmtree(self._copies_dir(model) / str(int(number)), ignore_errors=True)

    def _delete_files(self, model: str, number: int) -> int:
        keys = [obj["Key"] for obj in self.objects.listing(f"{check_model_name(model)}/{int(number)}/") if "Key" in obj]
        self.objects.delete_many(keys)
        return len(keys)

    def leftovers(self, model: str) -> list[Leftover]:
        """Uploads of ``model`` that never wrote a manifest, with their age by the server's clock."""
        rel = f"{check_model_name(model)}/"
        # Numbers with a real manifest; a tombstoned number whose files remain is still a leftover.
        manifested = {obj["Key"][len(rel) + len(".manifests/"):-5]
                      for obj in self.objects.listing(rel + ".manifests/") if "Key" in obj and obj["Size"] != len(TOMBSTONE)}
        found = []
        for common in self.objects.listing(rel, "/"):
            name = common.get("Prefix", "")[len(rel):].rstrip("/")
            if not name.isdigit() or name in manifested:
                continue
            objects = [o for o in self.objects.listing(f"{rel}{name}/") if "Key" in o]
            if objects:
                newest = max(o["LastModified"] for o in objects)
                found.append(Leftover(model, int(name), len(objects), (self.server_now() - newest).total_seconds()))
        return sorted(found, key=lambda x: x.number)

    def remove_leftover(self, model: str, number: int) -> bool:
        """Tombstone an unfinished upload's manifest key (If-None-Match), then delete its files.

        False (nothing deleted) if its manifest appeared meanwhile: the upload did finish.
        """
        try:
            self.objects.put(self._manifest_rel(model, number), TOMBSTONE, None, create=True)
        except StaleGeneration:
            got = self.objects.get(self._manifest_rel(model, number))
            if got is None or got[0] != TOMBSTONE:
                return False
        self._delete_files(model, number)
        return True

    def server_now(self) -> datetime:
        """The object store's clock (its Date header), which lease expiry and ages use."""
        return self.objects.server_now()

    def iter_models(self) -> Iterator[str]:
        """Model prefixes that hold at least one published version."""
        names = [c["Prefix"].rstrip("/") for c in self.objects.listing("", "/") if "Prefix" in c]
        return iter([n for n in sorted(names) if MODEL_NAME_RE.match(n) and self.version_numbers(n)])

    # --- leases ----------------------------------------------------------------------------

    @contextmanager
    def lease(self, name: str, timeout: float = 120.0) -> Iterator[None]:
        """Hold ``.leases/<name>``: created if absent, taken over once expired, renewed meanwhile."""
        holder = LeaseHolder(self.objects, f".leases/{name}", self.lease_ttl)
        holder.acquire(timeout)
        try:
            yield
        finally:
            holder.release()
