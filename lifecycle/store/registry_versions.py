"""One model's versions as a list whose pages are read only when looked at, and written only when changed.

:class:`Versions` is what ``ModelRecord.versions`` holds. Read from a head (schema 2 or 3) it
starts with the head's page references and no records; a caller that asks for one version
(:meth:`Versions.find`), whether numbers are registered (:meth:`Versions.registered`), the
highest number or the count, or appends a new version, reads at most the one page concerned.
Anything else a list does (iterating, indexing, removing) reads every page first, and from then
on the records are an ordinary list.

When the registry is written, :meth:`Versions.layout` regroups the records of the pages that
were read (all of them, once the list was read whole) and compares each with the records it was
read with (by the digest of its bytes, :func:`encode`): an unchanged page keeps its reference,
a changed or new one is created under a fresh name, and a page never read is neither encoded
nor compared. So a transaction that
registers one version or moves a label costs the same at 100 versions and at 10,000
(``bench/peers/registry.py``).

A checkpoint record lives in the page of the first version built from it, as it always has;
one no version came from (a failed attempt's) stays in the head.

This module must not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from dataclasses import dataclass
from typing import Any, overload

from lifecycle.errors import RegistryError
from lifecycle.store.records import CheckpointRecord, VersionRecord
from lifecycle.store.registry_pages import PREFIX, PageRef, page_of

#: Reads pages' plain data, in the order of the refs given.
Loader = Callable[[list[PageRef]], list[dict[str, Any]]]

_VERSION_FIELDS = tuple(f.name for f in dataclasses.fields(VersionRecord))
_CHECKPOINT_FIELDS = tuple(f.name for f in dataclasses.fields(CheckpointRecord))


def plain(record: VersionRecord | CheckpointRecord) -> dict[str, Any]:
    """A record's fields as a shallow dict (every field is JSON data already: no deep copy needed)."""
    names = _VERSION_FIELDS if isinstance(record, VersionRecord) else _CHECKPOINT_FIELDS
    return {name: getattr(record, name) for name in names}


def encode(model: str, page: int, versions: list[dict[str, Any]], checkpoints: list[dict[str, Any]]) -> bytes:
    """A version page's bytes (canonical: the same records always give the same bytes)."""
    body = {"schema": 2, "model": model, "page": page, "versions": versions, "checkpoints": checkpoints}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass
class Layout:
    """What a write needs of one model's versions: the head's refs, the pages to create, the head's checkpoints."""

    refs: list[PageRef]
    create: dict[str, bytes]  # key -> bytes of each new page
    loose: list[CheckpointRecord]
    groups: dict[int, list[VersionRecord]]  # every page that was read (or is new), as it is now
    owned: dict[int, list[CheckpointRecord]]
    changed: bool  # whether any page is created or dropped


class Versions(MutableSequence[VersionRecord]):
    """A model's version records, ascending by number, read page by page as they are needed."""

    def __init__(self, records: Iterable[VersionRecord] = (), refs: Iterable[PageRef] = (),
                 loader: Loader | None = None, model: str = "", where: str = "") -> None:
        self._refs = sorted(refs, key=lambda r: r.page)
        self._loader, self._model, self._where = loader, model, where
        self._pages: dict[int, list[VersionRecord]] = {}  # pages read, by number (while _items is None)
        self._owned: dict[int, list[CheckpointRecord]] = {}  # the checkpoints each page read holds
        self._items: list[VersionRecord] | None = None if self._refs else list(records)
        # Versions held inline by an old head (schema 1): compared with these to tell a change.
        self._inline = _text(self._items) if self._items else None

    # --- reading pages -----------------------------------------------------------------------

    def _read(self, numbers: Iterable[int]) -> None:
        """Read the pages numbered ``numbers`` that the head names and that were not read yet."""
        wanted = set(numbers)
        want = [r for r in self._refs if r.page in wanted and r.page not in self._pages]
        if not want or self._items is not None:
            return
        if self._loader is None:
            raise ValueError(f"the versions of {self._model!r} are not bound to a store")  # a programming error
        for ref, data in zip(want, self._loader(want), strict=True):
            try:
                versions = sorted((VersionRecord(**v) for v in data["versions"]), key=lambda v: v.version)
                owned = [CheckpointRecord(**c) for c in data.get("checkpoints") or []]
            except (TypeError, AttributeError) as e:
                raise RegistryError(f"malformed registry page {self._where}/{ref.key}: model {self._model!r}: {e}") from e
            self._pages[ref.page], self._owned[ref.page] = versions, owned

    def read_all(self) -> list[CheckpointRecord]:
        """Read every page still unread; the checkpoints the pages hold, in page order."""
        self._read(r.page for r in self._refs)
        return [c for n in sorted(self._owned) for c in self._owned[n]]

    def _all(self) -> list[VersionRecord]:
        if self._items is None:
            self.read_all()
            self._items = [v for n in sorted(self._pages) for v in self._pages[n]]
            self._pages = {}
        return self._items

    @property
    def whole(self) -> bool:
        """Whether every record is in memory (no page left unread)."""
        return self._items is not None or all(r.page in self._pages for r in self._refs)

    # --- questions that read one page at most ------------------------------------------------

    def find(self, number: int) -> VersionRecord | None:
        """Version ``number``'s record, reading only its page; None if it is not registered."""
        if self._items is None:
            self._read([page_of(number)])
            page = self._pages.get(page_of(number), [])
        else:
            page = self._items
        return next((v for v in page if v.version == number), None)

    def registered(self, numbers: Iterable[int]) -> set[int]:
        """Those of ``numbers`` that are registered, reading only pages that may hold them but do not say so."""
        numbers = set(numbers)
        if self._items is not None:
            return {v.version for v in self._items} & numbers
        full = {r.page: r for r in self._refs if r.count == r.last - r.first + 1}  # no gaps: the ref says it all
        self._read({page_of(n) for n in numbers if page_of(n) not in full or page_of(n) in self._pages})
        out = {n for n in numbers if page_of(n) in self._pages and any(v.version == n for v in self._pages[page_of(n)])}
        return out | {n for n in numbers if page_of(n) not in self._pages and page_of(n) in full
                      and full[page_of(n)].first <= n <= full[page_of(n)].last}

    def latest(self) -> int | None:
        """The highest registered number, reading no page."""
        if self._items is not None:
            return max((v.version for v in self._items), default=None)
        unread = [r.last for r in self._refs if r.page not in self._pages]
        read = [v.version for page in self._pages.values() for v in page]
        return max(unread + read, default=None)

    def __len__(self) -> int:
        if self._items is not None:
            return len(self._items)
        return sum(r.count for r in self._refs if r.page not in self._pages) + sum(map(len, self._pages.values()))

    def owned_checkpoint(self, digest: str) -> CheckpointRecord | None:
        """The checkpoint with ``digest`` held by a page read so far, if any."""
        return next((c for page in self._owned.values() for c in page if c.digest == digest), None)

    # --- the list -----------------------------------------------------------------------------

    def append(self, value: VersionRecord) -> None:
        """Add a record, in order of its number, reading only the page it goes to."""
        if self._items is not None:
            self._items.append(value)
            return
        n = page_of(value.version)
        self._read([n])
        page = self._pages.setdefault(n, [])
        page.append(value)
        if len(page) > 1 and page[-2].version > value.version:
            page.sort(key=lambda v: v.version)

    def sort(self, key: Callable[[VersionRecord], Any] | None = None, reverse: bool = False) -> None:
        """Sort in place (by number unless ``key`` says otherwise; pages read hold their records in that order)."""
        if self._items is None and key is None and not reverse:
            return  # each page read holds its records in number order
        self._all().sort(key=key or (lambda v: v.version), reverse=reverse)

    @overload
    def __getitem__(self, index: int) -> VersionRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[VersionRecord]: ...
    def __getitem__(self, index: int | slice) -> VersionRecord | list[VersionRecord]:
        return self._all()[index]

    @overload
    def __setitem__(self, index: int, value: VersionRecord) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[VersionRecord]) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        self._all()[index] = value

    def __delitem__(self, index: int | slice) -> None:
        del self._all()[index]

    def insert(self, index: int, value: VersionRecord) -> None:
        """Insert a record before ``index`` (reads every page)."""
        self._all().insert(index, value)

    def replace(self, records: Iterable[VersionRecord]) -> None:
        """Make ``records`` the whole list (pages whose records stay the same keep their names)."""
        self._all()
        self._items = list(records)

    def __iter__(self) -> Iterator[VersionRecord]:
        if self._items is None and self.whole:
            return (v for n in sorted(self._pages) for v in self._pages[n])
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Versions | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content

    def __repr__(self) -> str:
        return f"Versions({len(self)} records)"

    # --- writing -------------------------------------------------------------------------------

    def layout(self, model: str, checkpoints: list[CheckpointRecord]) -> Layout:
        """The pages a write needs: those read (or new) regrouped, each encoded only if it changed.

        ``checkpoints`` are the model's checkpoints outside unread pages (those read with every
        page, or only the head's): each goes to the page of the first version built from it.
        """
        if self._items is None:
            groups = {n: list(page) for n, page in self._pages.items()}
        else:
            groups = {r.page: [] for r in self._refs}
            for v in sorted(self._items, key=lambda v: v.version):
                groups.setdefault(page_of(v.version), []).append(v)
        pool, seen = [], set()
        for c in [c for n in sorted(self._owned) for c in self._owned[n]] + list(checkpoints):
            if c.digest not in seen:
                seen.add(c.digest)
                pool.append(c)
        first: dict[str, int] = {}
        for n in sorted(groups):
            for v in groups[n]:
                first.setdefault(v.checkpoint_digest, n)
        owned: dict[int, list[CheckpointRecord]] = {n: [] for n in groups}
        loose: list[CheckpointRecord] = []
        for c in pool:
            (owned[first[c.digest]] if c.digest in first else loose).append(c)
        refs = {r.page: r for r in self._refs if r.page not in groups}
        create: dict[str, bytes] = {}
        known = {r.page: r for r in self._refs}
        for n in sorted(groups):
            if not groups[n]:
                continue
            # Encoded to compare: a caller may have changed a record in place (its report, say).
            data = encode(model, n, [plain(v) for v in groups[n]], [plain(c) for c in owned[n]])
            digest = hashlib.sha256(data).hexdigest()
            if n in known and known[n].digest == digest:
                refs[n] = known[n]
                continue
            key = f"{PREFIX}/{model}/{n}-{uuid.uuid4().hex}.json"
            create[key] = data
            numbers = [v.version for v in groups[n]]
            refs[n] = PageRef(page=n, key=key, digest=digest, first=numbers[0], last=numbers[-1], count=len(numbers))
        out = [refs[n] for n in sorted(refs)]
        return Layout(out, create, loose, groups, owned, bool(create) or [r.key for r in out] != [r.key for r in self._refs])

    def changed(self, model: str, checkpoints: list[CheckpointRecord]) -> bool:
        """Whether a write would create or drop a page (versions inline in an old head: whether they differ)."""
        if not self._refs and self._inline is not None and self._items is not None:
            return _text(self._items) != self._inline
        if self._items is None and not self._pages:
            return False  # nothing read, nothing added
        return self.layout(model, checkpoints).changed

    def written(self, done: Layout) -> None:
        """Take the pages of a write whose head was committed: the records stay, as read from them."""
        self._refs, self._inline, self._items = list(done.refs), None, None
        self._pages = {n: g for n, g in done.groups.items() if g}
        self._owned = {n: done.owned[n] for n in self._pages}


def _text(records: list[VersionRecord]) -> str:
    """Records as canonical JSON, to tell whether any changed (in place too)."""
    return json.dumps([plain(v) for v in records], sort_keys=True, default=str)
