"""Unit: a registry commit reads and writes only what it touches, whatever the number of versions or models.

The store's reads and writes are counted by key (the real LocalStore, wrapped): registering a
version reads at most the page it goes to and creates only that page; a promote's commit (labels
and one history event) reads no version page and no other model's pages; a transaction that
changes nothing writes nothing; a version edited in a registry read in full replaces only its page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lifecycle.store import registry
from lifecycle.store import registry_pages as pages
from lifecycle.store.config import Paths
from tests.unit.test_registry_pages import add_versions, page_files

SIZE = pages.PAGE_SIZE


@contextmanager
def counted(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """The keys the store reads and writes while the block runs (a write's own compare-and-swap read is not counted)."""
    seen: dict[str, list[str]] = {"read": [], "write": []}
    writing: list[str] = []
    kind = type(paths.store)
    read, write = kind.read, kind.write

    def counting_read(self: object, key: str) -> object:
        if not writing:
            seen["read"].append(key)
        return read(self, key)  # type: ignore[arg-type]

    def counting_write(self: object, key: str, data: bytes, generation: str | None) -> str:
        seen["write"].append(key)
        writing.append(key)
        try:
            return write(self, key, data, generation)  # type: ignore[arg-type]
        finally:
            writing.pop()

    with monkeypatch.context() as m:
        m.setattr(kind, "read", counting_read)
        m.setattr(kind, "write", counting_write)
        yield seen


def two_models(paths: Paths) -> None:
    """Model m with three full pages and a part one; model other with one page; each with a history."""
    add_versions(paths, range(1, 3 * SIZE + 11))
    add_versions(paths, range(1, 6), model="other")
    with registry.transaction(paths) as reg:
        for name in ("m", "other"):
            reg.model(name).stable = 1
            reg.model(name).history.append(registry.HistoryEvent("promote", None, 1, "ok"))


def version_pages(keys: list[str]) -> list[str]:
    """Version pages among ``keys`` (not log pages, not the head)."""
    return [k for k in keys if k.startswith(pages.PREFIX + "/") and k.count("/") == 2]


def test_registering_a_version_reads_and_creates_only_its_own_page(bare_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    two_models(bare_home)
    before = page_files(bare_home)
    with counted(bare_home, monkeypatch) as seen, registry.transaction(bare_home) as reg:
        rec = reg.model("m")
        number = registry.allocate_version(bare_home, rec)
        rec.versions.append(registry.VersionRecord(number, "sha256:new", "run/new", number, True))
    assert number == 3 * SIZE + 11
    last = f"{pages.PREFIX}/m/3-"
    assert all(k.startswith(last) for k in version_pages(seen["read"])) and version_pages(seen["read"])
    assert [k for k in seen["write"] if k != registry.KEY] == version_pages(seen["write"])
    (created,) = version_pages(seen["write"])
    assert created.startswith(last)
    after = page_files(bare_home)
    # Only the last page of m was replaced; every other page (m's and other's) is the same file.
    assert before - after == {k for k in before if k.startswith(last)} and after - before == {created}


def test_a_version_on_a_new_page_reads_no_page(bare_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    add_versions(bare_home, range(1, 2 * SIZE + 1))
    with counted(bare_home, monkeypatch) as seen:
        add_versions(bare_home, range(2 * SIZE + 1, 2 * SIZE + 2))
    assert version_pages(seen["read"]) == []
    (created,) = version_pages(seen["write"])
    assert created.startswith(f"{pages.PREFIX}/m/2-")
    assert [v.version for v in registry.load(bare_home).model("m").versions] == list(range(1, 2 * SIZE + 2))


def test_a_promote_commit_touches_no_version_page_and_no_other_model(
        bare_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    two_models(bare_home)
    head = json.loads(bare_home.registry_file.read_text())
    with counted(bare_home, monkeypatch) as seen, registry.lease(bare_home):
        reg = registry.load(bare_home, lazy=True)  # as rollout.transaction.complete_forward commits
        rec = reg.model("m")
        rec.stable = 2
        rec.history.append(registry.HistoryEvent("promote", 1, 2, "ok"))
        registry.save(bare_home, reg)
    assert version_pages(seen["read"]) == [] and version_pages(seen["write"]) == []
    assert not any(k.startswith(f"{pages.PREFIX}/other/") for k in seen["read"] + seen["write"])
    assert [k for k in seen["write"] if k != registry.KEY] == [k for k in seen["write"] if "/m/history/" in k]
    now = json.loads(bare_home.registry_file.read_text())
    assert now["models"]["other"] == head["models"]["other"]  # the other model's entry is as it was
    assert now["models"]["m"]["pages"] == head["models"]["m"]["pages"] and now["models"]["m"]["stable"] == 2
    assert registry.load(bare_home).model("m").history[-1].to_version == 2


def test_a_transaction_that_changes_nothing_writes_nothing(bare_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    two_models(bare_home)
    with counted(bare_home, monkeypatch) as seen, registry.transaction(bare_home) as reg:
        rec = reg.model("m")
        assert rec.version(SIZE + 3).version == SIZE + 3 and rec.has_version(3 * SIZE + 10)
        assert not rec.has_version(3 * SIZE + 11) and rec.latest_version() == 3 * SIZE + 10
        rec.stable = rec.stable  # the same value: no change
    assert seen["write"] == []
    assert version_pages(seen["read"]) == [next(p.key for p in reg.model("m").pages if p.page == 1)]


def test_a_version_edited_in_a_full_read_replaces_only_its_page(bare_home: Paths) -> None:
    two_models(bare_home)
    before = page_files(bare_home)
    with registry.lease(bare_home):
        reg = registry.load(bare_home)
        reg.model("m").version(SIZE + 5).validated = False
        registry.save(bare_home, reg)
    after = page_files(bare_home)
    assert len(before - after) == 1 and (before - after).pop().startswith(f"{pages.PREFIX}/m/1-")
    assert len(after - before) == 1
    again = registry.load(bare_home).model("m")
    assert not again.version(SIZE + 5).validated and len(again.checkpoints) == 3 * SIZE + 10


def test_a_report_changed_in_place_in_a_transaction_is_written(bare_home: Paths) -> None:
    two_models(bare_home)
    with registry.transaction(bare_home) as reg:
        reg.model("m").version(2 * SIZE + 1).report["metrics"]["miou"] = 0.75
    assert registry.load(bare_home).model("m").version(2 * SIZE + 1).report["metrics"]["miou"] == 0.75
