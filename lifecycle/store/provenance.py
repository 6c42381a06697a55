"""Who and when, as every record of the repository states them (registry, journal, claims, leases)."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import UTC, datetime


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string (seconds precision)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def current_user() -> str:
    """Who runs this command, for provenance and history."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers): fall back to the uid
        return f"uid{os.getuid()}"


def owner_id() -> str:
    """Who writes, for people reading claims and leases: ``host pid N``."""
    return f"{socket.gethostname()} pid {os.getpid()}"

