"""A version's manifest: every file's relative path, size and sha256.

In an object store a version exists only once its manifest does: the publisher uploads every
file first and writes the manifest last, with ``If-None-Match: *`` (so a version is never
replaced), and a reader lists manifests, not files. A copy made from the manifest is checked
file by file (:func:`verify_file`) before it is renamed into place, so neither a partial upload
nor a corrupted download is ever served.

Format (JSON)::

    {"schema": 1, "model": "deeplab", "version": 4, "owner": "host pid 123", "created": "...",
     "files": {"saved_model.pb": {"size": 1234, "sha256": "..."}, "variables/...": {...}}}

This module must not import TensorFlow or boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import CorruptVersion

SCHEMA = 1
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One file of a version."""

    size: int
    sha256: str


@dataclass
class Manifest:
    """What a complete version holds."""

    model: str
    version: int
    files: dict[str, FileEntry]
    owner: str = ""
    created: str = ""
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """The size of the whole version."""
        return sum(f.size for f in self.files.values())

    def to_bytes(self) -> bytes:
        """The manifest as JSON (sorted, so equal manifests are equal bytes)."""
        return json.dumps(
            {
                "schema": self.schema, "model": self.model, "version": self.version, "owner": self.owner,
                "created": self.created,
                "files": {k: {"size": v.size, "sha256": v.sha256} for k, v in sorted(self.files.items())},
            },
            indent=1, sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        """Parse a manifest; anything malformed is CorruptVersion naming ``where``."""
        try:
            raw = json.loads(data.decode("utf-8"))
            files = {str(k): FileEntry(int(v["size"]), str(v["sha256"])) for k, v in raw["files"].items()}
            manifest = cls(
                model=str(raw["model"]), version=int(raw["version"]), files=files,
                owner=str(raw.get("owner", "")), created=str(raw.get("created", "")),
                schema=int(raw.get("schema", SCHEMA)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptVersion(f"malformed manifest {where}: {e}; delete the version or re-register it") from e
        for rel in files:
            check_relative(rel, where)
        return manifest


def check_relative(rel: str, where: str) -> str:
    """``rel`` if it is a safe relative file path (no absolute, empty, '.' or '..' parts)."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise CorruptVersion(f"manifest {where} names an unsafe path {rel!r}; refusing to use it")
    return rel


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def files_of(folder: Path) -> list[str]:
    """Every regular file under ``folder`` as a ``/``-separated relative path, sorted."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in names:
            full = Path(root) / name
            if full.is_file():
                found.append(full.relative_to(folder).as_posix())
    return sorted(found)


def build(folder: Path, model: str, version: int, owner: str, created: str) -> Manifest:
    """The manifest of the local version folder ``folder``."""
    files = {rel: FileEntry((folder / rel).stat().st_size, sha256_file(folder / rel)) for rel in files_of(folder)}
    return Manifest(model=model, version=version, files=files, owner=owner, created=created)


def verify_file(path: Path, rel: str, entry: FileEntry, where: str, digest: str | None = None) -> None:
    """CorruptVersion unless ``path`` has the manifest's size and sha256 (``digest`` if computed while copying)."""
    size = path.stat().st_size
    if size == entry.size and digest is None:  # hashed only when the size is right
        digest = sha256_file(path)
    _check(size, digest or "", rel, entry, where)


def verify_data(data: bytes, rel: str, entry: FileEntry, where: str) -> bytes:
    """``data`` (one file of a version, read whole), or CorruptVersion unless it matches the manifest."""
    _check(len(data), hashlib.sha256(data).hexdigest(), rel, entry, where)
    return data


def _check(size: int, digest: str, rel: str, entry: FileEntry, where: str) -> None:
    if size != entry.size:
        raise CorruptVersion(f"{where}: {rel} has {size} bytes, the manifest says {entry.size}")
    if digest != entry.sha256:
        raise CorruptVersion(f"{where}: {rel} does not match its sha256 in the manifest")
