"""The objects under one prefix of a bucket, with S3's conditional writes: :class:`S3Objects`.

The primitives :class:`~lifecycle.store.s3.S3Store` (documents, versions, leftovers) and
:mod:`lifecycle.store.s3_lease` (leases) are built on. Keys are relative to the prefix; every
botocore error is translated to a :class:`~lifecycle.errors.StorageError` naming the object, and
a lost race (412) is :class:`~lifecycle.errors.StaleGeneration`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from lifecycle.errors import StaleGeneration, StorageError
from lifecycle.store.s3_client import SCHEME, is_not_found, is_precondition_failed, make_client, translate

# User metadata (x-amz-meta-mlc-write) naming the write that put an object there.
WRITE_TOKEN = "mlc-write"


def server_date(response: dict[str, Any]) -> datetime:
    """The time by the object store's clock: the ``Date`` header of one of its responses."""
    header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return parsedate_to_datetime(header) if header else datetime.now(UTC)


class S3Objects:
    """Objects under ``s3://bucket/prefix``: read, conditionally written, listed and deleted."""

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"{SCHEME}{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (thread-safe to share)."""
        if self._client is None:
            self._client = make_client()
        return self._client

    def key(self, rel: str) -> str:
        """The bucket key of the prefix-relative ``rel``."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def where(self, rel: str = "") -> str:
        """``s3://bucket/prefix/rel``, for messages."""
        return f"{self.url}/{rel}" if rel else self.url

    def call(self, rel: str, method: str, **kwargs: Any) -> Any:
        """``client.<method>(Bucket=..., **kwargs)``, botocore errors translated (412 and 404 re-raised)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            if is_precondition_failed(e) or is_not_found(e):
                raise
            raise translate(e, self.where(rel)) from e
        except BotoCoreError as e:
            raise translate(e, self.where(rel)) from e

    def get(self, rel: str) -> tuple[bytes, str, dict[str, Any]] | None:
        """(bytes, ETag, response) of the object ``rel``, or None if it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.call(rel, "get_object", Key=self.key(rel))
            return response["Body"].read(), response["ETag"], response
        except ClientError as e:
            if is_not_found(e):
                return None
            raise translate(e, self.where(rel)) from e
        except BotoCoreError as e:  # a connection dropped while reading the body
            raise translate(e, self.where(rel)) from e

    def put(self, rel: str, data: bytes, generation: str | None, create: bool) -> str:
        """Conditionally write ``rel``: create only if absent, or replace at ``generation``; the new ETag.

        Each write carries a unique token in its metadata. botocore retries a request whose
        answer was lost; if the first attempt had landed, the retry meets 412. Finding our own
        token on the object tells that case (success) from a lost race (StaleGeneration).
        Comparing bytes would not: two writers may compute the same bytes from one stale read.
        """
        from botocore.exceptions import ClientError

        token = uuid.uuid4().hex
        condition = {"IfNoneMatch": "*"} if create else {"IfMatch": generation}
        try:
            response = self.call(rel, "put_object", Key=self.key(rel), Body=data,
                                 Metadata={WRITE_TOKEN: token}, **condition)
            return str(response["ETag"])
        except ClientError as e:
            if not is_precondition_failed(e):
                raise translate(e, self.where(rel)) from e
            current = self.get(rel)
            if current is not None and current[2].get("Metadata", {}).get(WRITE_TOKEN) == token:
                return current[1]
            what = "was created" if create else "changed"
            raise StaleGeneration(f"{self.where(rel)} {what} meanwhile (another mlc wrote it); re-read it and retry") from e

    def delete(self, rel: str, generation: str | None = None) -> None:
        """Delete ``rel`` (only at ``generation``, If-Match, when given); a missing object is fine.

        StaleGeneration when the object is still there at another generation.
        """
        from botocore.exceptions import ClientError

        condition = {} if generation is None else {"IfMatch": generation}
        try:
            self.call(rel, "delete_object", Key=self.key(rel), **condition)
        except ClientError as e:
            if not (is_precondition_failed(e) or is_not_found(e)):
                raise translate(e, self.where(rel)) from e
            if is_precondition_failed(e) and self.get(rel) is not None:
                raise StaleGeneration(f"{self.where(rel)} changed meanwhile (another mlc wrote it); not deleted") from e

    def listing(self, rel_prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        """Every object (``{"Key", "Size", "LastModified"...}``) and, with a delimiter, every
        common prefix (``{"Prefix"}``) under ``rel_prefix``, keys relative to the prefix."""
        kwargs: dict[str, Any] = {"Prefix": self.key(rel_prefix)}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        cut = len(self.prefix) + 1 if self.prefix else 0
        while True:
            page = self.call(rel_prefix, "list_objects_v2", **kwargs)
            for obj in page.get("Contents", []):
                yield {**obj, "Key": obj["Key"][cut:]}
            for common in page.get("CommonPrefixes", []):
                yield {"Prefix": common["Prefix"][cut:]}
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def delete_many(self, keys: list[str]) -> None:
        """Delete prefix-relative ``keys`` (batches of 1000); missing keys are fine."""
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = self.call(batch[0], "delete_objects",
                                 Delete={"Objects": [{"Key": self.key(k)} for k in batch], "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise StorageError(f"could not delete {self.where(first.get('Key', ''))}: {first.get('Code')}")

    def server_now(self, rel_prefix: str = ".leases/") -> datetime:
        """The object store's clock (the Date header of a small listing), which lease expiry and ages use."""
        response = self.call(rel_prefix, "list_objects_v2", Prefix=self.key(rel_prefix), MaxKeys=1)
        return server_date(response)
