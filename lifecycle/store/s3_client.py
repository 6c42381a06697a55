"""boto3 at mlc's boundary: ``s3://`` URLs, one client configuration, errors translated once.

The client takes AWS's standard configuration and nothing of mlc's own: ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``) for S3-compatible servers (MinIO, Ceph RGW, SeaweedFS), the
credentials chain (environment, shared files, instance roles) and the region. Retries use
botocore's ``standard`` mode unless ``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS`` say otherwise.

Every botocore exception leaving a store becomes one :class:`~lifecycle.errors.StorageError`
with a line a user can act on (:func:`translate`); a 412 is the store's business
(:class:`~lifecycle.errors.StaleGeneration`) and is recognised by :func:`is_precondition_failed`.

boto3 is imported lazily: a local repository never pays for it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from lifecycle.errors import (
    BucketNotFound,
    StorageAccessDenied,
    StorageError,
    StorageUnreachable,
    UsageError,
)

SCHEME = "s3://"
# S3's bucket naming rules, loosely: what a URL may name before the server has its say.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# How long one request may wait for a connection; the retries multiply it.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0

_ACCESS_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AllAccessDisabled", "AuthorizationHeaderMalformed", "403",
}
_BUCKET_CODES = {"NoSuchBucket"}


def is_s3_url(text: str) -> bool:
    """Whether ``text`` names an object-store prefix (``s3://...``)."""
    return text.startswith(SCHEME)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``); UsageError if malformed."""
    if not is_s3_url(url):
        raise UsageError(f"{url!r} is not an s3:// URL (expected s3://bucket/prefix)")
    bucket, _, prefix = url[len(SCHEME):].partition("/")
    if not _BUCKET_RE.match(bucket):
        raise UsageError(f"{url!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, '.', '-')")
    prefix = prefix.strip("/")
    if any(part in {"", ".", ".."} for part in prefix.split("/")) and prefix:
        raise UsageError(f"{url!r}: the prefix may not contain empty, '.' or '..' parts")
    return bucket, prefix


def make_client() -> Any:
    """A boto3 S3 client configured by the standard AWS environment and files."""
    import boto3
    from botocore.config import Config

    retries: dict[str, Any] = {"mode": os.environ.get("AWS_RETRY_MODE", "standard")}
    if "AWS_MAX_ATTEMPTS" not in os.environ:
        retries["max_attempts"] = 3
    config = Config(
        retries=retries, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
        max_pool_connections=32,
    )
    return boto3.session.Session().client("s3", config=config)


def error_code(e: BaseException) -> str:
    """The S3 error code of a botocore ClientError (``NoSuchKey``, ``PreconditionFailed``...), else ''."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def http_status(e: BaseException) -> int:
    """The HTTP status of a botocore ClientError, else 0."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_precondition_failed(e: BaseException) -> bool:
    """A conditional write or delete lost: 412 (or 409 ConditionalRequestConflict on AWS)."""
    return error_code(e) in {"PreconditionFailed", "ConditionalRequestConflict"} or http_status(e) == 412


def is_not_found(e: BaseException) -> bool:
    """A missing key (GetObject's NoSuchKey). HeadObject's bare 404 is not used: it is the same
    for a missing bucket, which must be reported as such."""
    return error_code(e) == "NoSuchKey"


def translate(e: BaseException, where: str) -> StorageError:
    """One clear StorageError for a botocore exception raised while working on ``where``."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return StorageAccessDenied(
            f"no usable AWS credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE) and retry"
        )
    if isinstance(e, NoRegionError):
        return StorageError(f"no AWS region for {where}: set AWS_DEFAULT_REGION and retry")
    if isinstance(e, (ConnectionError, HTTPClientError)):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        return StorageUnreachable(
            f"cannot reach the object store at {endpoint} for {where}: {_first_line(e)}; "
            "check AWS_ENDPOINT_URL and the network"
        )
    if isinstance(e, ClientError):
        code, status = error_code(e), http_status(e)
        if code in _BUCKET_CODES:
            return BucketNotFound(f"the bucket of {where} does not exist: create it first or fix the repository URL")
        if code in _ACCESS_CODES or status == 403:
            return StorageAccessDenied(
                f"the object store refused the credentials for {where} ({code or status}): check "
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions"
            )
        return StorageError(f"the object store failed a request on {where}: {code or status} {_first_line(e)}")
    return StorageError(f"the object store failed a request on {where}: {_first_line(e)}")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
