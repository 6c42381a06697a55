"""The registry's versions, kept in pages beside ``registry.yaml`` so the head stays small.

``registry.yaml`` is the *head*: per model its labels, pins, a list of page references and the
state of its history and attempts logs (whose pages are :mod:`lifecycle.store.registry_log`'s,
built the same way). The version records (and the checkpoint records they
were built from) live in pages of :data:`PAGE_SIZE` version numbers each, one JSON document per
page under ``registry/<model>/``. A page is immutable: it is created under a fresh name (its
number and a random id, ``registry/deeplab/3-1f2e....json``) and never replaced, so:

- **The head is the one commit point.** A writer creates the pages it changed (create-only),
  then replaces the head by compare-and-swap. A writer killed in between leaves pages nobody
  references; a later registry write removes them. A lost race (StaleGeneration on the head)
  changes nothing a reader sees, and since no two writers ever share a page name, removing
  another writer's leftover can never take a page a committed head names.
- **Readers never see half an update.** A reader that read the head just before a writer
  removed a page it replaced finds that page gone, and reads the head again.
- **Reading costs what you ask for.** ``mlc status`` reads the head and only the pages of the
  versions it shows (stable, canary, configured, loaded and the newest), so its time does not
  grow with the number of versions; ``registry.load`` reads every page, up to
  :data:`PAGE_READERS` at once (on object storage each page is a round trip), and a
  transaction only those it looks at (:mod:`lifecycle.store.registry_versions`).

JSON, not YAML, because the pages are machine data and the standard library parses JSON about
a hundred times faster than libyaml does YAML.

Registries written before pages (schema 1: every version inline in ``registry.yaml``) are read
as they are and moved to pages by the next registry write. The version pages themselves are
still written as schema 2: their format has not changed.

This module must not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lifecycle.errors import LifecycleError, PageMissing, RegistryError
from lifecycle.store.base import Store
from lifecycle.store.records import CheckpointRecord, VersionRecord

#: Version numbers per page: a page of deeplab versions is about 130 KB and parses in ~2 ms.
PAGE_SIZE = 256
PREFIX = "registry"
# How often a reader re-reads the head when a page it names was replaced meanwhile.
READ_ATTEMPTS = 5
# Pages read at once by one reader: each is a GET on object storage, about 40 of them at 10,000
# versions. boto3's client is thread-safe, and its default pool keeps 10 connections.
PAGE_READERS = 8


@dataclass(frozen=True)
class PageRef:
    """What the head says of one page: its number, key, content digest and the versions in it."""

    page: int
    key: str
    digest: str
    first: int
    last: int
    count: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the head (every field is a str or an int: no deep copy needed)."""
        return {name: getattr(self, name) for name in _REF_FIELDS}


_REF_FIELDS = tuple(f.name for f in dataclasses.fields(PageRef))


def page_of(version: int) -> int:
    """The page holding version ``version``."""
    return (int(version) - 1) // PAGE_SIZE


def parse_refs(model: str, data: Any, source: str) -> list[PageRef]:
    """The head's page list of ``model``; RegistryError naming ``source`` when malformed."""
    try:
        return [PageRef(**p) for p in data or []]
    except TypeError as e:
        raise RegistryError(f"malformed registry {source}: model {model!r}: pages: {e}") from e


def read_page(store: Store, ref: PageRef, source: str) -> dict[str, Any]:
    """One page's plain data; PageMissing when it is gone, RegistryError when it is malformed."""
    doc = store.read(ref.key)
    if doc is None:
        raise PageMissing(f"registry page {source}/{ref.key} is gone (replaced by a writer meanwhile); try again")
    try:
        data = json.loads(doc.data)
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise ValueError("expected a 'versions' list")
        return data
    except ValueError as e:
        raise RegistryError(f"malformed registry page {source}/{ref.key}: {e}; restore it from a backup") from e


def read_pages(store: Store, refs: list[PageRef], source: str) -> list[dict[str, Any]]:
    """:func:`read_page` of each ref, in order, up to :data:`PAGE_READERS` at once; the first
    error in ref order is raised."""
    if len(refs) < 3:  # status reads one or two pages: no threads for those
        return [read_page(store, ref, source) for ref in refs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(PAGE_READERS, len(refs)), thread_name_prefix="mlc-pages") as pool:
        return list(pool.map(lambda ref: read_page(store, ref, source), refs))


def read_versions(
    store: Store, model: str, refs: list[PageRef], wanted: set[int] | None, source: str
) -> tuple[list[VersionRecord], list[CheckpointRecord]]:
    """The version and checkpoint records in the pages numbered in ``wanted`` (None: every page), ascending."""
    versions: list[VersionRecord] = []
    checkpoints: list[CheckpointRecord] = []
    chosen = [ref for ref in refs if wanted is None or ref.page in wanted]
    for ref, data in zip(chosen, read_pages(store, chosen, source), strict=True):
        try:
            versions += [VersionRecord(**v) for v in data["versions"]]
            checkpoints += [CheckpointRecord(**c) for c in data.get("checkpoints") or []]
        except (TypeError, AttributeError) as e:
            raise RegistryError(f"malformed registry page {source}/{ref.key}: model {model!r}: {e}") from e
    versions.sort(key=lambda v: v.version)
    return versions, checkpoints


def page_keys(store: Store) -> set[str]:
    """Every page in the store, referenced or not."""
    return {k for k in store.keys(f"{PREFIX}/") if k.endswith(".json")}


def remove(store: Store, keys: Iterable[str]) -> None:
    """Delete pages no head names any more (best effort: one left behind goes with a later write)."""
    for key in sorted(keys):
        try:
            store.delete(key)
        except (LifecycleError, OSError):
            pass
