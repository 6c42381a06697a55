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

Leases live in :mod:`lifecycle.store.s3_lease`. About 430 lines, a little above the usual 400:
documents, versions and leftovers share the conditional-write primitives at the top, and
splitting them would expose those primitives across modules.
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

from lifecycle.errors import StaleGeneration, StorageError, VersionNotFound
from lifecycle.failpoints import failpoint
from lifecycle.store import manifest as manifests
from lifecycle.store.base import Document, Leftover, Store
from lifecycle.store.config import MODEL_NAME_RE, check_model_name
from lifecycle.store.files import fsync_tree, incoming_folder, rename_into_place
from lifecycle.store.registry import now_iso
from lifecycle.store.s3_client import (
    SCHEME,
    is_not_found,
    is_precondition_failed,
    make_client,
    translate,
)
from lifecycle.store.s3_lease import LeaseHolder, owner_id, server_date

# A manifest key holding this is a tombstone: the number is used up, the version does not exist.
TOMBSTONE = b'{"tombstone": true}\n'
# User metadata (x-amz-meta-mlc-write) naming the write that put an object there.
WRITE_TOKEN = "mlc-write"
DEFAULT_LEASE_TTL_S = 30.0
LEASE_TTL_ENV = "MLC_S3_LEASE_TTL"
TRANSFER_THREADS = 8


class S3Store(Store):
    """A repository under ``s3://bucket/prefix``, with a local folder for staging and copies."""

    def __init__(self, bucket: str, prefix: str, local_dir: Path, client: Any = None,
                 lease_ttl: float | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"{SCHEME}{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.local_dir = Path(local_dir)
        self._client = client
        self.lease_ttl = float(lease_ttl or os.environ.get(LEASE_TTL_ENV) or DEFAULT_LEASE_TTL_S)

    def __repr__(self) -> str:
        return f"S3Store({self.url})"

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (thread-safe to share)."""
        if self._client is None:
            self._client = make_client()
        return self._client

    # --- raw objects -----------------------------------------------------------------------

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _where(self, rel: str = "") -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def _call(self, rel: str, method: str, **kwargs: Any) -> Any:
        """``client.<method>(Bucket=..., **kwargs)``, botocore errors translated (412 re-raised)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            if is_precondition_failed(e) or is_not_found(e):
                raise
            raise translate(e, self._where(rel)) from e
        except BotoCoreError as e:
            raise translate(e, self._where(rel)) from e

    def _get(self, rel: str) -> tuple[bytes, str, dict[str, Any]] | None:
        """(bytes, ETag, response) of the object ``rel``, or None if it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._call(rel, "get_object", Key=self._key(rel))
            return response["Body"].read(), response["ETag"], response
        except ClientError as e:
            if is_not_found(e):
                return None
            raise translate(e, self._where(rel)) from e
        except BotoCoreError as e:  # a connection dropped while reading the body
            raise translate(e, self._where(rel)) from e

    def _put(self, rel: str, data: bytes, generation: str | None, create: bool) -> str:
        """Conditionally write ``rel``: create only if absent, or replace at ``generation``.

        Each write carries a unique token in its metadata. botocore retries a request whose
        answer was lost; if the first attempt had landed, the retry meets 412. Finding our own
        token on the object tells that case (success) from a lost race (StaleGeneration).
        Comparing bytes would not: two writers may compute the same bytes from one stale read.
        """
        from botocore.exceptions import ClientError

        token = uuid.uuid4().hex
        condition = {"IfNoneMatch": "*"} if create else {"IfMatch": generation}
        try:
            response = self._call(rel, "put_object", Key=self._key(rel), Body=data,
                                  Metadata={WRITE_TOKEN: token}, **condition)
            return str(response["ETag"])
        except ClientError as e:
            if not is_precondition_failed(e):
                raise translate(e, self._where(rel)) from e
            current = self._get(rel)
            if current is not None and current[2].get("Metadata", {}).get(WRITE_TOKEN) == token:
                return current[1]
            what = "was created" if create else "changed"
            raise StaleGeneration(f"{self._where(rel)} {what} meanwhile (another mlc wrote it); re-read it and retry") from e

    def _list(self, rel_prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        """Every object (``{"Key", "Size", "LastModified"...}``) and, with a delimiter, every
        common prefix (``{"Prefix"}``) under ``rel_prefix``, keys relative to the store."""
        kwargs: dict[str, Any] = {"Prefix": self._key(rel_prefix)}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        cut = len(self.prefix) + 1 if self.prefix else 0
        while True:
            page = self._call(rel_prefix, "list_objects_v2", **kwargs)
            for obj in page.get("Contents", []):
                yield {**obj, "Key": obj["Key"][cut:]}
            for common in page.get("CommonPrefixes", []):
                yield {"Prefix": common["Prefix"][cut:]}
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _delete_objects(self, keys: list[str]) -> None:
        """Delete store-relative ``keys`` (batches of 1000); missing keys are fine."""
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = self._call(batch[0], "delete_objects",
                                  Delete={"Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise StorageError(f"could not delete {self._where(first.get('Key', ''))}: {first.get('Code')}")

    def check(self) -> None:
        """Fail now, with one clear line, if the bucket is missing, unreachable or refuses us."""
        list(self._list(".leases/", "/"))

    # --- documents -------------------------------------------------------------------------

    @staticmethod
    def _check_key(key: str) -> str:
        parts = key.split("/")
        if not key or any(not p or p.startswith(".") or p.isdigit() for p in parts):
            raise ValueError(f"invalid document key {key!r}")  # keys are mlc's own, never user input
        return key

    def read(self, key: str) -> Document | None:
        """The document at ``key`` with its ETag, or None if it does not exist."""
        got = self._get(self._check_key(key))
        return None if got is None else Document(got[0], got[1])

    def write(self, key: str, data: bytes, generation: str | None) -> str:
        """Create (``generation=None``, If-None-Match) or replace at the ETag (If-Match)."""
        return self._put(self._check_key(key), data, generation, create=generation is None)

    def delete(self, key: str, generation: str | None = None) -> None:
        """Delete ``key`` (only at ``generation``, If-Match, when given); a missing key is fine."""
        from botocore.exceptions import ClientError

        rel = self._check_key(key)
        condition = {} if generation is None else {"IfMatch": generation}
        try:
            self._call(rel, "delete_object", Key=self._key(rel), **condition)
        except ClientError as e:
            if not is_precondition_failed(e):
                raise translate(e, self._where(rel)) from e
            if self._get(rel) is not None:
                raise StaleGeneration(f"{self._where(rel)} changed meanwhile (another mlc wrote it); not deleted") from e

    def keys(self, prefix: str = "") -> list[str]:
        """Every document key under ``prefix`` (version files, manifests, claims, leases excluded)."""
        found = []
        for obj in self._list(prefix):
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
        for obj in self._list(rel, "/"):
            name = obj.get("Key", "")[len(rel):]
            if name.endswith(".json") and name[:-5].isdigit() and obj["Size"] != len(TOMBSTONE):
                numbers.append(int(name[:-5]))
        return sorted(numbers)

    def read_manifest(self, model: str, number: int) -> tuple[manifests.Manifest, str]:
        """The manifest of a published version and its ETag; VersionNotFound otherwise."""
        rel = self._manifest_rel(model, number)
        got = self._get(rel)
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
            self._put(f"{check_model_name(model)}/.claims/{int(number)}", body, None, create=True)
        except StaleGeneration:
            return False
        # A version put there by other means (no claim) still takes the number.
        return self._get(self._manifest_rel(model, number)) is None

    def publish_version(self, model: str, number: int, staged: Path) -> None:
        """Upload every file of ``staged`` under ``<model>/<N>/``, then create the manifest."""
        staged = Path(staged)
        if staged.parent.resolve() != self.staging_dir(model).resolve():
            raise ValueError(f"{staged} is not staged in {self.staging_dir(model)}")  # a programming error
        rel = self._manifest_rel(model, number)
        if self._get(rel) is not None:
            raise StaleGeneration(f"version {number} of {model} already exists in {self.url}; a published version never changes")
        manifest = manifests.build(staged, model, int(number), owner_id(), now_iso())
        base = f"{check_model_name(model)}/{int(number)}/"
        self._transfer(
            [(file, base + file) for file in manifest.files],
            lambda file, key: self.client.upload_file(str(staged / file), self.bucket, self._key(key)),
        )
        failpoint("store:publish")
        try:
            self._put(rel, manifest.to_bytes(), None, create=True)
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
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
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
        got = self._get(key)
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
        self._put(self._manifest_rel(model, number), TOMBSTONE, etag, create=False)
        self._delete_files(model, number)
        shutil.rmtree(self._copies_dir(model) / str(int(number)), ignore_errors=True)

    def _delete_files(self, model: str, number: int) -> int:
        keys = [obj["Key"] for obj in self._list(f"{check_model_name(model)}/{int(number)}/") if "Key" in obj]
        self._delete_objects(keys)
        return len(keys)

    def leftovers(self, model: str) -> list[Leftover]:
        """Uploads of ``model`` that never wrote a manifest, with their age by the server's clock."""
        rel = f"{check_model_name(model)}/"
        # Numbers with a real manifest; a tombstoned number whose files remain is still a leftover.
        manifested = {obj["Key"][len(rel) + len(".manifests/"):-5]
                      for obj in self._list(rel + ".manifests/") if "Key" in obj and obj["Size"] != len(TOMBSTONE)}
        found = []
        for common in self._list(rel, "/"):
            name = common.get("Prefix", "")[len(rel):].rstrip("/")
            if not name.isdigit() or name in manifested:
                continue
            objects = [o for o in self._list(f"{rel}{name}/") if "Key" in o]
            if objects:
                newest = max(o["LastModified"] for o in objects)
                found.append(Leftover(model, int(name), len(objects), (self.server_now() - newest).total_seconds()))
        return sorted(found, key=lambda x: x.number)

    def remove_leftover(self, model: str, number: int) -> bool:
        """Tombstone an unfinished upload's manifest key (If-None-Match), then delete its files.

        False (nothing deleted) if its manifest appeared meanwhile: the upload did finish.
        """
        try:
            self._put(self._manifest_rel(model, number), TOMBSTONE, None, create=True)
        except StaleGeneration:
            got = self._get(self._manifest_rel(model, number))
            if got is None or got[0] != TOMBSTONE:
                return False
        self._delete_files(model, number)
        return True

    def server_now(self) -> datetime:
        """The object store's clock (its Date header), which lease expiry and ages use."""
        response = self._call("", "list_objects_v2", Prefix=self._key(".leases/"), MaxKeys=1)
        return server_date(response)

    def iter_models(self) -> Iterator[str]:
        """Model prefixes that hold at least one published version."""
        names = [c["Prefix"].rstrip("/") for c in self._list("", "/") if "Prefix" in c]
        return iter([n for n in sorted(names) if MODEL_NAME_RE.match(n) and self.version_numbers(n)])

    # --- leases ----------------------------------------------------------------------------

    @contextmanager
    def lease(self, name: str, timeout: float = 120.0) -> Iterator[None]:
        """Hold ``.leases/<name>``: created if absent, taken over once expired, renewed meanwhile."""
        holder = LeaseHolder(self, f".leases/{name}", self.lease_ttl)
        holder.acquire(timeout)
        try:
            yield
        finally:
            holder.release()
