"""What the version page and the servers table read beside the api: registry records and server addresses.

Both are read-only reads of the home, the same ones ``mlc status`` and ``mlc register`` make:
the version's record with its whole validation report (kept beside the version, see
:func:`lifecycle.store.registry.full_report`), its checkpoint's provenance, and each server's
REST address from configs/servers.yaml or the ``mlc serve`` records.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lifecycle.errors import LifecycleError
from lifecycle.serving import fleet
from lifecycle.store import registry
from lifecycle.store.config import Paths, check_model_name


def version_detail(paths: Paths, model: str, version: int) -> dict[str, Any]:
    """Version ``version`` of ``model`` as plain data: its record, whole report and checkpoint (None if unknown)."""
    rec = registry.load(paths).model(check_model_name(model))
    v = rec.version(version)  # VersionNotFound names the registered ones
    checkpoint = rec.checkpoint_for_digest(v.checkpoint_digest) if v.checkpoint_digest else None
    return {
        **asdict(v),
        "report": registry.full_report(paths, rec.name, v),
        "source": asdict(checkpoint) if checkpoint else None,
        "numbers": sorted(x.version for x in rec.versions),
    }


def version_numbers(paths: Paths, model: str) -> list[int]:
    """Every registered version number of ``model``, ascending."""
    return sorted(v.version for v in registry.load(paths).model(check_model_name(model)).versions)


def rest_addresses(paths: Paths) -> dict[str, str | None]:
    """Each server's gRPC address -> its REST address (empty when the servers file cannot be read)."""
    try:
        return {s.grpc: s.rest for s in fleet.load(paths).servers}
    except LifecycleError:  # status reports the broken file as a warning; the table just lacks the column
        return {}
