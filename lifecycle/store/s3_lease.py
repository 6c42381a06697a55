"""Leases on an object store: one writer at a time for a long operation, without a lock server.

A lease is the object ``<prefix>/.leases/<name>``, created with ``If-None-Match: *``. Its
holder renews it (``If-Match`` on its own ETag) every ``ttl/4`` seconds from a daemon thread and
deletes it (``If-Match``) when done. A waiter that finds it not renewed for ``ttl`` seconds, by
the server's clock (``Last-Modified`` against the response's ``Date``, so machines' clocks do
not matter), replaces it with ``If-Match`` on the ETag it saw: of several waiters exactly one
wins. A writer killed on another machine therefore blocks the others for at most ``ttl``
seconds. A holder paused for longer than ``ttl`` loses its lease; its later writes still go
through compare-and-swap, so they fail instead of overwriting.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

from lifecycle.errors import LockTimeout, StaleGeneration, StorageError
from lifecycle.store.provenance import now_iso, owner_id
from lifecycle.store.s3_objects import S3Objects, server_date


class LeaseHolder:
    """One held lease object and the thread that renews it."""

    def __init__(self, objects: S3Objects, rel: str, ttl: float) -> None:
        self.objects, self.rel, self.ttl = objects, rel, ttl
        self.token = uuid.uuid4().hex
        self.etag = ""
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": owner_id(), "token": self.token, "ttl": self.ttl,
                           "renewals": self.renewals, "time": now_iso()}).encode()

    def acquire(self, timeout: float) -> None:
        """Create the lease object, or take it over once its holder stopped renewing it."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                self.etag = self.objects.put(self.rel, self._body(), None, create=True)
                break
            except StaleGeneration:
                pass
            got = self.objects.get(self.rel)
            if got is None:
                continue  # released meanwhile
            data, etag, response = got
            try:
                held = json.loads(data)
            except ValueError:
                held = {}
            age = (server_date(response) - response["LastModified"]).total_seconds()
            if age > float(held.get("ttl", self.ttl)):
                try:
                    self.etag = self.objects.put(self.rel, self._body(), etag, create=False)
                    break
                except StaleGeneration:
                    continue
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{held.get('owner', 'another mlc')} holds the lease {self.objects.where(self.rel)} "
                    f"(waited {timeout:.0f} s; it expires {held.get('ttl', self.ttl):.0f} s after its holder "
                    "stops renewing it); wait for it to finish and retry"
                )
            time.sleep(random.uniform(0.5, 1.0) * min(1.0, 0.05 * 2 ** min(attempt, 5)))
            attempt += 1
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.rel}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            self.renewals += 1
            try:
                self.etag = self.objects.put(self.rel, self._body(), self.etag, create=False)
            except StaleGeneration:
                return  # taken over after we failed to renew in time: nothing more to hold
            except StorageError:
                continue  # a blip: the next renewal may pass before the lease expires

    def release(self) -> None:
        """Stop renewing and delete the lease object if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.objects.delete(self.rel, self.etag)
        except (StaleGeneration, StorageError):  # taken over, or unreachable: it expires by itself
            pass

