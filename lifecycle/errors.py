"""One exception hierarchy for mlc and its server.

Every condition a user can hit is a subclass of :class:`LifecycleError` with a message that
says what went wrong, where, and what to do. Each class maps once to a process exit code, a
gRPC status code and an HTTP status; the CLI, the gRPC servicers and the REST handlers read
these attributes and never decide codes themselves.

This module must stay cheap to import: it does not import grpc or TensorFlow. gRPC codes are
named by their ``grpc.StatusCode`` member name.
"""

from __future__ import annotations

import errno
from pathlib import Path

# TF Serving's own mapping from gRPC status to HTTP status for its REST API
# (tensorflow_serving/model_servers/http_rest_api_handler.cc -> ToHTTPStatusCode).
GRPC_TO_HTTP: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class LifecycleError(Exception):
    """Base of every mlc error: a user-facing message plus exit, gRPC and HTTP codes."""

    exit_code: int = 1
    grpc_code: str = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        """HTTP status for this error, derived from its gRPC code as TF Serving does."""
        return GRPC_TO_HTTP.get(self.grpc_code, 500)

    def __str__(self) -> str:
        return self.message


# --- usage and configuration -------------------------------------------------------------


class UsageError(LifecycleError):
    """The command line asks for something that cannot be done as written."""

    exit_code = 2
    grpc_code = "INVALID_ARGUMENT"


class FlagError(UsageError):
    """mlc-model-server's command line is malformed: an unknown flag or a bad value (exit 2)."""


class ConfigError(LifecycleError):
    """A model definition or other file under configs/ is missing or malformed."""

    grpc_code = "INVALID_ARGUMENT"


class RegistryError(LifecycleError):
    """model_repo/registry.yaml is malformed or inconsistent."""

    grpc_code = "DATA_LOSS"


class PageMissing(RegistryError):
    """A registry page the head names is gone: a writer replaced it after the head was read.

    Readers that meet it read the head again; it reaches a user only when the registry kept
    changing while it was read.
    """


class LockTimeout(LifecycleError):
    """Another mlc process holds the registry lock for too long."""

    grpc_code = "ABORTED"


class DiskFull(LifecycleError):
    """A local file system has no room left (ENOSPC or EDQUOT) for a file mlc writes."""

    grpc_code = "RESOURCE_EXHAUSTED"


def disk_full(e: OSError, where: str | Path) -> DiskFull | None:
    """The DiskFull for an OSError that says the disk is full (None for any other OSError)."""
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    name = "ENOSPC" if e.errno == errno.ENOSPC else "EDQUOT"
    return DiskFull(f"no space left on device ({name}) writing {where}: free space on that file system and retry")


# --- object storage (a repository at s3://bucket/prefix) -----------------------------------


class StorageError(LifecycleError):
    """The object store refused or failed a request (the base of the storage conditions)."""

    grpc_code = "UNAVAILABLE"


class StorageUnreachable(StorageError):
    """The object store's endpoint does not answer (wrong AWS_ENDPOINT_URL, network down)."""

    grpc_code = "UNAVAILABLE"


class StorageAccessDenied(StorageError):
    """The object store refuses the credentials (unknown key, wrong secret, no permission)."""

    grpc_code = "PERMISSION_DENIED"


class BucketNotFound(StorageError):
    """The repository's bucket does not exist."""

    grpc_code = "NOT_FOUND"


class CorruptVersion(StorageError):
    """A published version's files do not match its manifest (size or sha256)."""

    grpc_code = "DATA_LOSS"


class CorruptRecord(LifecycleError):
    """A TFRecord file (a version's warmup records) ends mid-record or its checksums do not match."""

    grpc_code = "DATA_LOSS"


# --- registry lookups ----------------------------------------------------------------------


class StaleGeneration(LifecycleError):
    """A conditional write lost a race: the document was created or replaced meanwhile."""

    grpc_code = "ABORTED"


class ModelNotFound(LifecycleError):
    """A model name is unknown to the registry, the definitions or a server."""

    grpc_code = "NOT_FOUND"


class VersionNotFound(LifecycleError):
    """A version number is unknown for a model."""

    grpc_code = "NOT_FOUND"


# --- checkpoints, export and validation ----------------------------------------------------


class CheckpointError(LifecycleError):
    """A checkpoint path is missing, incomplete or unreadable."""

    grpc_code = "INVALID_ARGUMENT"


class ArchitectureMismatch(CheckpointError):
    """A checkpoint's variables do not match the network of the model definition."""


class ExportError(LifecycleError):
    """Writing the SavedModel failed."""

    grpc_code = "INTERNAL"


class ValidationFailed(LifecycleError):
    """A staged export failed one of the validation checks; ``check`` names which."""

    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, message: str, check: str = "validation") -> None:
        super().__init__(message)
        self.check = check


class SignatureMismatch(ValidationFailed):
    """The exported signature does not match the contract in the model definition."""

    def __init__(self, message: str) -> None:
        super().__init__(message, check="contract")


class EvalSetError(LifecycleError):
    """An evaluation set on disk is missing, incomplete or malformed (a file is named)."""

    grpc_code = "INVALID_ARGUMENT"


class ImageError(LifecycleError):
    """A file given as an image is missing or is not a readable image."""

    grpc_code = "INVALID_ARGUMENT"


# --- serving and rollout -------------------------------------------------------------------


class ServerUnavailable(LifecycleError):
    """A model server cannot be reached or did not answer in time."""

    grpc_code = "UNAVAILABLE"


class ResponseMismatch(LifecycleError):
    """A model server answered, but not with the outputs the signature contract promises."""

    grpc_code = "DATA_LOSS"


class PromotionFailed(LifecycleError):
    """A promotion or rollback failed and was reverted."""

    grpc_code = "ABORTED"


class StepFailed(LifecycleError):
    """One rollout step failed on production; the rollout reverts and raises PromotionFailed.

    Internal to the rollout: ``step`` names the journal step that failed.
    """

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


class PreviouslyFailed(LifecycleError):
    """``mlc watch`` declines a checkpoint whose exact content already failed validation."""


# --- model server (TF Serving's own conditions) --------------------------------------------


class InvalidArgument(LifecycleError):
    """A request to the model server is malformed (TF Serving INVALID_ARGUMENT)."""

    grpc_code = "INVALID_ARGUMENT"


class FailedPrecondition(LifecycleError):
    """Something cannot be done in the current state (TF Serving FAILED_PRECONDITION).

    A model server request that cannot be served now, or a promote/rollback precondition that
    does not hold (the quality gate, compare-and-swap, nothing to roll back to).
    """

    grpc_code = "FAILED_PRECONDITION"


class ServableNotFound(LifecycleError):
    """No loaded servable answers a request (TF Serving NOT_FOUND)."""

    grpc_code = "NOT_FOUND"


class Unimplemented(LifecycleError):
    """The model server does not implement a requested feature."""

    grpc_code = "UNIMPLEMENTED"


class DeadlineExceeded(LifecycleError):
    """A request ran past its deadline."""

    grpc_code = "DEADLINE_EXCEEDED"


class ResourceExhausted(LifecycleError):
    """A request exceeds a size bound or a queue is full."""

    grpc_code = "RESOURCE_EXHAUSTED"


class RequestTooLarge(LifecycleError):
    """A REST request body is larger than the server's bound (mlc's own limit; raise it with
    --mlc_max_request_bytes). HTTP 413 rather than RESOURCE_EXHAUSTED's 429: nothing is busy."""

    grpc_code = "RESOURCE_EXHAUSTED"

    @property
    def http_status(self) -> int:
        """413 Payload Too Large."""
        return 413


class RequestHeadersTooLarge(LifecycleError):
    """A REST request's line and headers exceed the server's bound (HTTP 431)."""

    grpc_code = "INVALID_ARGUMENT"

    @property
    def http_status(self) -> int:
        """431 Request Header Fields Too Large."""
        return 431


class InternalError(LifecycleError):
    """An unexpected failure inside the model server."""

    grpc_code = "INTERNAL"


class ServingError(LifecycleError):
    """A model-server condition reported with TF Serving's own gRPC code.

    For statuses that pass through unchanged: a TensorFlow runtime error raised while loading
    or running a SavedModel, a load that left a version at END, or (on the client side) a
    server that answered a request with an error.
    """

    def __init__(self, message: str, grpc_code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.grpc_code = grpc_code


class StartupError(LifecycleError):
    """The model server could not start; the message follows TF Serving's ``CODE: message``."""


class BindError(LifecycleError):
    """The model server could not listen where it was asked to (a port or a Unix socket)."""

    grpc_code = "UNAVAILABLE"


class RolloutAborted(StepFailed):
    """A progressive rollout's step failed its judgement, or someone aborted the rollout."""


class NoTrafficSplit(ServingError):
    """The server has no traffic split: tensorflow_model_server, or started without the admin token."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "UNIMPLEMENTED")
