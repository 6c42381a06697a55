"""The registry's append-only logs: each model's rollout history, failed registration attempts and approvals.

A log lives in immutable pages of :data:`LOG_PAGE_SIZE` records, page ``n`` holding records
``n * LOG_PAGE_SIZE`` onwards, one JSON document per page under ``registry/<model>/<kind>/``
(``registry/deeplab/history/3-1f2e....json``). The head (``registry.yaml``) keeps per log only
the page ids, the number of records and the last record (what ``mlc status`` shows), so its
size does not grow with the log's.

- **Appending costs the same at any length.** A write that appends reads only the last page
  (when it is not full), and creates it again with the new records under a fresh name; the
  other pages are never touched. The head then names the new page by compare-and-swap, and the
  replaced page goes once the head is written (:mod:`lifecycle.store.registry_pages` explains
  why a fresh name per page makes that safe).
- **Reading costs what you ask for.** :class:`Log` reads its pages only when a caller looks at
  its records (``mlc history``, a rollback walking the stable chain), all at once
  (:data:`~lifecycle.store.registry_pages.PAGE_READERS` in parallel); :attr:`Log.last` and
  ``len()`` come from the head alone.

A log read in full and then changed in place (an edited event) is written back page by page:
pages whose bytes are unchanged keep their names.

This module must not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from lifecycle.errors import PageMissing, RegistryError, StaleGeneration
from lifecycle.store.base import Store
from lifecycle.store.records import Approval, Attempt, HistoryEvent, record_hash
from lifecycle.store.registry_pages import PAGE_READERS, PREFIX, READ_ATTEMPTS

#: Records per page: a full page of history events is about 30 KB.
LOG_PAGE_SIZE = 128
#: The logs of a model, by the name of its field in the head, and the record each holds.
KINDS: dict[str, type[Any]] = {"history": HistoryEvent, "attempts": Attempt, "approvals": Approval}
#: Logs the head leaves out while they are empty (added after schema 3: older heads read the same).
OPTIONAL_KINDS = ("approvals",)
SCHEMA = 3

R = TypeVar("R", HistoryEvent, Attempt, Approval)


def page_key(model: str, kind: str, page: int, page_id: str) -> str:
    """The key of page ``page`` of ``model``'s ``kind`` log."""
    return f"{PREFIX}/{model}/{kind}/{page}-{page_id}.json"


def encode(model: str, kind: str, page: int, records: list[dict[str, Any]]) -> bytes:
    """A page's bytes (canonical: the same records always give the same bytes)."""
    body = {"schema": SCHEMA, "model": model, "kind": kind, "page": page, "records": records}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def read_page(store: Store, key: str, where: str) -> tuple[list[dict[str, Any]], str]:
    """A page's records as plain data and the digest of its bytes; PageMissing when it is gone."""
    doc = store.read(key)
    if doc is None:
        raise PageMissing(f"registry page {where}/{key} is gone (replaced by a writer meanwhile); try again")
    try:
        data = json.loads(doc.data)
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise ValueError("expected a 'records' list")
    except ValueError as e:
        raise RegistryError(f"malformed registry page {where}/{key}: {e}; restore it from a backup") from e
    return data["records"], hashlib.sha256(doc.data).hexdigest()


@dataclass(frozen=True)
class LogState:
    """What the head says of a log: its page ids, how many records, and the last one."""

    pages: tuple[str, ...] = ()
    count: int = 0
    last: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the head."""
        return {"count": self.count, "pages": list(self.pages), "last": self.last}

    @classmethod
    def parse(cls, data: Any) -> LogState:
        """The head's entry for one log (TypeError/ValueError when malformed)."""
        if not isinstance(data, dict):
            raise TypeError(f"expected count, pages and last, got {type(data).__name__}")
        pages = tuple(str(p) for p in data.get("pages") or [])
        count = int(data.get("count") or 0)
        if count > len(pages) * LOG_PAGE_SIZE or count <= (len(pages) - 1) * LOG_PAGE_SIZE:
            raise ValueError(f"{count} records do not fill {len(pages)} pages")
        last = data.get("last")
        if last is not None and not isinstance(last, dict):
            raise TypeError("last: expected a mapping")
        return cls(pages, count, last)


@dataclass(frozen=True)
class Written:
    """A log's pages after a write: the state for the head, its new keys and the keys it replaced."""

    state: LogState
    created: tuple[str, ...]
    replaced: tuple[str, ...]
    digests: tuple[str, ...] | None  # of every page, when the log was held in full
    added: tuple[dict[str, Any], ...] = ()  # the records appended since the head was read


class Log(MutableSequence[R], Generic[R]):
    """One model's history or attempts: a list whose records stay in their pages until looked at."""

    def __init__(self, kind: str, records: Iterable[R] = (), state: LogState | None = None) -> None:
        self.kind = kind
        self.state = state or LogState()
        # Every record once read (or given); None while they are still in the pages.
        self._items: list[R] | None = list(records) if not self.state.pages else None
        # Records held inline by an older head are not new: only those after them were appended.
        self._base = len(self._items) if self._items is not None else 0
        self._appended: list[R] = []  # appended while ``_items`` is None
        self._digests: tuple[str, ...] = ()  # of the pages as read
        self._store: Store | None = None
        self._model, self._where = "", ""
        self._refresh: Callable[[], LogState] | None = None

    def bind(self, store: Store, model: str, where: str, refresh: Callable[[], LogState]) -> None:
        """Where the pages are, and how to read the head again when one was replaced meanwhile."""
        self._store, self._model, self._where, self._refresh = store, model, where, refresh

    # --- reading -----------------------------------------------------------------------------

    @property
    def last(self) -> R | None:
        """The newest record, without reading any page."""
        if self._items is not None:
            return self._items[-1] if self._items else None
        if self._appended:
            return self._appended[-1]
        return self._record(self.state.last, "last") if self.state.last else None

    def _record(self, data: dict[str, Any], where: str) -> R:
        try:
            record: R = KINDS[self.kind](**data)
        except TypeError as e:
            raise RegistryError(f"malformed registry {where}: model {self._model!r}: {self.kind}: {e}") from e
        return record

    def _read_pages(self, state: LogState) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        if self._store is None:
            raise ValueError(f"the {self.kind} log of {self._model!r} is not bound to a store")  # a programming error
        store, keys = self._store, [page_key(self._model, self.kind, n, i) for n, i in enumerate(state.pages)]
        if len(keys) < 3:
            got = [read_page(store, k, self._where) for k in keys]
        else:
            from concurrent.futures import ThreadPoolExecutor  # here: it imports logging, which status --json avoids

            with ThreadPoolExecutor(min(PAGE_READERS, len(keys)), thread_name_prefix="mlc-log") as pool:
                got = list(pool.map(lambda k: read_page(store, k, self._where), keys))
        return [r for records, _ in got for r in records], tuple(d for _, d in got)

    def _all(self) -> list[R]:
        """Every record, reading the pages once (again after the head, if one was replaced meanwhile)."""
        if self._items is None:
            for _ in range(READ_ATTEMPTS):
                try:
                    raw, digests = self._read_pages(self.state)
                    break
                except PageMissing:
                    if self._refresh is None:
                        raise
                    self.state = self._refresh()
            else:
                raise RegistryError(f"registry {self._where} kept changing while it was read; try again")
            self._items = [self._record(r, f"page of {self.kind}") for r in raw] + self._appended
            self._digests, self._appended = digests, []
        return self._items

    def __len__(self) -> int:
        return self.state.count + len(self._appended) if self._items is None else len(self._items)

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> list[R]: ...
    def __getitem__(self, index: int | slice) -> R | list[R]:
        return self._all()[index]

    def __iter__(self) -> Iterator[R]:
        return iter(self._all())

    def __reversed__(self) -> Iterator[R]:
        return reversed(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Log | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content

    def __repr__(self) -> str:
        return f"Log({self.kind!r}, {len(self)} records)"

    # --- changing ----------------------------------------------------------------------------

    def append(self, value: R) -> None:
        """Add a record at the end, chained to the one before it (its hash in ``prev``), without reading the pages."""
        before = self.last
        if not value.prev and before is not None:
            value.prev = record_hash(before)
        (self._appended if self._items is None else self._items).append(value)

    def extend(self, values: Iterable[R]) -> None:
        """Add records at the end, without reading the pages."""
        for value in values:
            self.append(value)

    def __iadd__(self, values: Iterable[R]) -> Log[R]:
        self.extend(values)
        return self

    @overload
    def __setitem__(self, index: int, value: R) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[R]) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        self._all()[index] = value

    def __delitem__(self, index: int | slice) -> None:
        del self._all()[index]

    def insert(self, index: int, value: R) -> None:
        """Insert a record before ``index`` (reads the pages)."""
        self._all().insert(index, value)

    def replace(self, records: Iterable[R]) -> None:
        """Make ``records`` the whole log (pages whose records stay the same keep their names)."""
        self._all()
        self._items = list(records)

    # --- writing -----------------------------------------------------------------------------

    def _pages_of(self, records: list[dict[str, Any]], first: int) -> list[tuple[int, bytes]]:
        return [(first + n, encode(self._model, self.kind, first + n, records[i:i + LOG_PAGE_SIZE]))
                for n, i in enumerate(range(0, len(records), LOG_PAGE_SIZE))]

    def changed(self) -> bool:
        """Whether the log differs from what its pages hold."""
        if self._items is None:
            return bool(self._appended)
        encoded = self._pages_of([dataclasses.asdict(r) for r in self._items], 0)
        return tuple(hashlib.sha256(data).hexdigest() for _, data in encoded) != self._digests

    def write(self, store: Store, model: str) -> Written:
        """Create the pages this log needs beyond its head's (create-only); nothing visible changes
        until a head names them. StaleGeneration when the page to extend was replaced meanwhile."""
        self._model = model
        old = self.state
        if self._items is None:  # appended only: extend the last page, keep the others
            if not self._appended:
                return Written(old, (), (), None)
            added = tuple(dataclasses.asdict(r) for r in self._appended)
            full = old.count // LOG_PAGE_SIZE
            kept, replaced = list(old.pages[:full]), []
            records: list[dict[str, Any]] = []
            if old.count % LOG_PAGE_SIZE:
                key = page_key(model, self.kind, full, old.pages[full])
                try:
                    records, _ = read_page(store, key, store.url)
                except PageMissing as e:
                    raise StaleGeneration(f"{e}: another mlc changed the registry") from e
                replaced.append(key)
            records += [dataclasses.asdict(r) for r in self._appended]
            encoded, digests = self._pages_of(records, full), None
            last: dict[str, Any] | None = records[-1]
        else:  # held in full: every page again, those unchanged keep their names
            items = [dataclasses.asdict(r) for r in self._items]
            encoded, kept = self._pages_of(items, 0), []
            replaced = [page_key(model, self.kind, n, i) for n, i in enumerate(old.pages)]
            digests = tuple(hashlib.sha256(data).hexdigest() for _, data in encoded)
            last = items[-1] if items else None
            added = tuple(items[max(old.count, self._base):])
        ids, created = list(kept), []
        for n, data in encoded:
            digest = hashlib.sha256(data).hexdigest()
            if digests is not None and n < len(self._digests) and self._digests[n] == digest:
                ids.append(old.pages[n])
                continue
            ids.append(uuid.uuid4().hex[:16])
            created.append(page_key(model, self.kind, n, ids[-1]))
            store.write(created[-1], data, None)
        keys = {page_key(model, self.kind, n, i) for n, i in enumerate(ids)}
        count = old.count + len(self._appended) if self._items is None else len(self._items)
        return Written(LogState(tuple(ids), count, last), tuple(created), tuple(k for k in replaced if k not in keys),
                       digests, added)

    def written(self, done: Written) -> None:
        """Take the state of a write whose head was committed."""
        self.state, self._base = done.state, 0
        if self._items is None:
            self._appended = []
        elif done.digests is not None:
            self._digests = done.digests

    def keys(self, model: str) -> list[str]:
        """The keys of the pages the head names."""
        return [page_key(model, self.kind, n, i) for n, i in enumerate(self.state.pages)]
